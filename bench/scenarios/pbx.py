"""1. create_call then update_call (multipart, wrk at 32 connections) through the real gateway
and core, beside (a) a bare Falcon app that parses the same form and (b) that app relaying
to a bare grpc.aio echo server. Goal: full path >= 0.5 x (b), for both actions. And one
create_call at a time at rest (before any load): goal under 3 ms at the gateway (median)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.context import Context, Section, Verdict, ceiling_servers, fmt, ratio
from bench.cpu import CpuMeter
from bench.procs import CHANNEL_KEY, run_load, running_stack
from bench.profile import Recorder
from bench.wrk import run_wrk

GOAL = 0.5
REST_GOAL_MS = 3.0
REST_COUNT = 200
CALLS_PATH = f"/api/v2/telephony/calls/{CHANNEL_KEY}"


def at_rest(ctx: Context, base_url: str, name: str) -> dict[str, Any]:
    """REST_COUNT create_calls one after another on an idle server (bench.rest_load)."""
    args = ["--url", base_url + CALLS_PATH, "--count", str(REST_COUNT)]
    return run_load("bench.rest_load", args, ctx.folder("pbx"), name, timeout=300)


def measure(
    ctx: Context, base_url: str, name: str, folder: Path, pids: dict[str, int]
) -> dict[str, Any]:
    """A warm-up, then a create window and an update window over the calls it created, with
    the CPU time the servers in `pids` spent per request of those windows."""
    assert ctx.wrk is not None
    s = ctx.settings
    url = base_url + CALLS_PATH
    counts = folder / f"{name}.counts"
    prefix = f"{name}{time.time_ns()}"
    common: dict[str, Any] = {"counts_file": counts, "connections": s.connections}
    run_wrk(ctx.wrk, url, mode="create", prefix=prefix + "w", duration=s.warmup_seconds, **common)
    meter = CpuMeter(pids).start()
    create = run_wrk(ctx.wrk, url, mode="create", prefix=prefix, duration=s.http_seconds, **common)
    update = run_wrk(ctx.wrk, url, mode="update", prefix=prefix, duration=s.http_seconds, **common)
    meter.stop()
    cpu = meter.per_request_ms(create["n"] + update["n"])
    return {"create": create, "update": update, "cpu": cpu}


def profile(ctx: Context, base_url: str, pids: dict[str, int], folder: Path) -> list[Any]:
    """Another create and update window with py-spy on gateway and core."""
    assert ctx.wrk is not None
    seconds = ctx.settings.profile_seconds
    recorders = [Recorder(name, pid, 2 * seconds + 1, folder) for name, pid in pids.items()]
    time.sleep(0.5)
    url = base_url + CALLS_PATH
    counts = folder / "profile.counts"
    prefix = f"prof{time.time_ns()}"
    for mode in ("create", "update"):
        run_wrk(
            ctx.wrk,
            url,
            mode=mode,
            prefix=prefix,
            counts_file=counts,
            connections=ctx.settings.connections,
            duration=seconds,
        )
    return [p for p in (r.finish() for r in recorders) if p is not None]


def run(ctx: Context) -> Section:
    section = Section("pbx", "1. PBX endpoint over HTTP: create_call, then update_call to answered")
    if ctx.wrk is None:
        section.error = "wrk is not installed (apt-get install -y wrk): scenario skipped"
        return section
    folder = ctx.folder("pbx")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    rest: dict[str, dict[str, Any]] = {}
    with running_stack(folder / "stack") as stack:
        rest["full"] = at_rest(ctx, stack.http_url, "rest-full")
        assert stack.gateway is not None and stack.core is not None
        servers = {"gateway": stack.gateway.pid, "core": stack.core.pid}
        results["full"] = measure(ctx, stack.http_url, "full", folder, servers)
        if ctx.settings.profile:
            pids = {"core (full path)": stack.core.pid, "gateway (full path)": stack.gateway.pid}
            section.profiles = profile(ctx, stack.http_url, pids, folder)
    with ceiling_servers(folder) as ceilings:
        rest["relay"] = at_rest(ctx, ceilings.relay_url, "rest-relay")
        p = ceilings.pids
        results["bare"] = measure(ctx, ceilings.bare_url, "bare", folder, {"bare": p["bare"]})
        relay_pids = {"relay app": p["relay"], "echo": p["echo"]}
        results["relay"] = measure(ctx, ceilings.relay_url, "relay", folder, relay_pids)
        # The real gateway in front of the echo server: the gateway's own share.
        with running_stack(folder / "gateway-echo", core_target=ceilings.echo_target) as alone:
            assert alone.gateway is not None
            gateway_pids = {"gateway": alone.gateway.pid, "echo": p["echo"]}
            results["gateway"] = measure(ctx, alone.http_url, "gateway", folder, gateway_pids)
            if ctx.settings.profile:
                pids = {"gateway (in front of the echo server)": alone.gateway.pid}
                section.profiles += profile(ctx, alone.http_url, pids, folder)

    section.headers = ["action", "setup", "req/s", "p50 ms", "p99 ms", "errors", "vs (b)"]
    labels = {
        "full": "full path (gateway + core)",
        "bare": "(a) bare Falcon, parse form",
        "relay": "(b) bare Falcon -> grpc.aio echo",
        "gateway": "(c) real gateway -> grpc.aio echo",
    }
    for action in ("create", "update"):
        ceiling = results["relay"][action]["rps"]
        for name, label in labels.items():
            r = results[name][action]
            section.rows.append(
                [
                    f"{action}_call",
                    label,
                    fmt(r["rps"]),
                    fmt(r["p50_ms"]),
                    fmt(r["p99_ms"]),
                    str(r["errors"]),
                    fmt(ratio(r["rps"], ceiling), 2),
                ]
            )
        value = ratio(results["full"][action]["rps"], ceiling)
        section.verdicts.append(
            Verdict(
                f"{action}_call req/s, full path / (b)", fmt(value, 2), f">= {GOAL}", value >= GOAL
            )
        )
        errors = results["full"][action]["errors"]
        if action == "update" and 0 < errors <= ctx.settings.connections:
            section.notes.append(
                f"The full path's {errors} update_call error(s) are 404s for calls whose "
                "create_call was cut off when wrk ended the create window (its last requests "
                "per connection are left out of the update window, a slow one can be older)."
            )
        repeated = results["full"][action].get("repeated", 0)
        if action == "update" and repeated:
            section.notes.append(
                f"The full path's update window outran its create window: {repeated} updates "
                "went round again (answered -> answered, allowed and applied in full)."
            )
    _rest_rows(section, rest)
    _cpu_verdicts(section, results)
    s = ctx.settings
    gateway_share = ratio(results["gateway"]["create"]["rps"], results["relay"]["create"]["rps"])
    section.verdicts.append(
        Verdict(
            "create_call req/s, (c) real gateway / (b)", fmt(gateway_share, 2), "(reported)", None
        )
    )
    section.notes.append(
        "(c) runs the real gateway against the echo server instead of core: it shows what the "
        "gateway alone costs next to (b); the rest of the gap is core's."
    )
    section.notes.append(
        "(b) sends one unary CreateCall / UpdateCall per HTTP request, the bare relay. The real "
        "gateway, in (c) and the full path, sends the PBX's requests in batches (SubmitCalls, "
        "gateway/batcher.py): a request that finds fewer than two batches with core goes at "
        "once, alone; those that arrive while two are go together in the next. At rest every "
        "batch is of one."
    )
    section.notes.append(
        f"wrk -t1 -c{s.connections} -d{s.http_seconds:g}s with bench/lua/pbx.lua, after a "
        f"{s.warmup_seconds:g} s warm-up; every create_call has a new pbx_call_id, every "
        "update_call moves one of those calls to answered by pbx_call_id."
    )
    section.notes.append(
        "Every create_call here has the phone of the original's cURL examples (777777777, not "
        "a valid number anywhere). Core remembers the last 4,096 numbers it normalized and "
        "formatted, so this phone is parsed once; a number never seen before costs core a "
        "phonenumbers parse (about 25 us on this machine) and, when valid, a formatting for its "
        "cards (about 20 us)."
    )
    return section


def _cpu_verdicts(section: Section, results: dict[str, dict[str, Any]]) -> None:
    """What a request costs each server in CPU, and what that bounds: core is one Python
    process, and its threads share one interpreter lock, so it spends at most one CPU
    second a second however many cores the machine has."""
    cost = {name: results[name]["cpu"] for name in ("full", "relay", "gateway")}
    if not all(cost.values()):
        return
    total = {name: sum(per.values()) for name, per in cost.items()}

    def parts(name: str) -> str:
        return " + ".join(f"{server} {fmt(ms, 2)}" for server, ms in cost[name].items())

    for name, label in (("full", "full path"), ("relay", "(b)"), ("gateway", "(c)")):
        section.verdicts.append(
            Verdict(
                f"CPU ms per create/update request, {label}: {parts(name)}",
                fmt(total[name], 2),
                "(reported)",
                None,
            )
        )
    relay = results["relay"]
    relay_rps = (relay["create"]["rps"] + relay["update"]["rps"]) / 2
    core_bound = ratio(1000 / cost["full"]["core"], relay_rps)
    section.verdicts.append(
        Verdict(
            "req/s core could serve on one whole CPU (1000 / its CPU ms), over (b)'s req/s",
            fmt(core_bound, 2),
            "(reported)",
            None,
        )
    )
    section.notes.append(
        "CPU ms per request: user + system CPU time of each server process (/proc/<pid>/stat, "
        "all its threads) over the create and update windows, divided by the requests they "
        "answered. Core's threads share one interpreter lock, so core spends at most about "
        "one CPU second a second: 1000 / its CPU ms per request bounds its req/s on any "
        "number of cores."
    )


def _rest_rows(section: Section, rest: dict[str, dict[str, Any]]) -> None:
    full, relay = rest["full"], rest["relay"]
    for label, r in (
        ("full path (gateway + core)", full),
        ("(b) bare Falcon -> grpc.aio echo", relay),
    ):
        section.rows.append(
            [
                "create_call at rest",
                label,
                "-",
                fmt(r["p50_ms"], 2),
                fmt(r["p99_ms"], 2),
                str(r["errors"]),
                fmt(ratio(relay["p50_ms"], r["p50_ms"]), 2),
            ]
        )
    section.verdicts.append(
        Verdict(
            f"create_call at rest, gateway p50 of {REST_COUNT} sequential (relay (b): "
            f"{fmt(relay['p50_ms'], 2)} ms)",
            f"{fmt(full['p50_ms'], 2)} ms",
            f"< {REST_GOAL_MS:g} ms",
            full["p50_ms"] < REST_GOAL_MS,
        )
    )
    section.notes.append(
        f"At rest: python -m bench.rest_load, {REST_COUNT} multipart create_calls one after "
        "another over one keep-alive connection (after 20 untimed), on the freshly started "
        "stack before any other load; \"vs (b)\" for these rows is (b)'s p50 over the row's p50."
    )
