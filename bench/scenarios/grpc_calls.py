"""2. CreateCall / UpdateCall straight over gRPC at 1 and 32 concurrent callers (a separate
load process), beside a bare grpc.aio echo server. Goal: >= 0.5 x echo."""

from __future__ import annotations

import math
from typing import Any

from bench.context import Context, Section, Verdict, ceiling_servers, fmt, ratio
from bench.cpu import CpuMeter
from bench.procs import run_load, running_stack

GOAL = 0.5


def load(ctx: Context, target: str, pid: int, concurrency: int, name: str) -> dict[str, Any]:
    """The load process's result, with the CPU ms per request of the server at `pid`."""
    s = ctx.settings
    args = ["calls", "--target", target, "--concurrency", str(concurrency)]
    args += ["--duration", str(s.grpc_seconds), "--warmup", str(s.warmup_seconds)]
    args += ["--channels", "1" if concurrency < 8 else "2"]
    timeout = 2 * s.grpc_seconds + s.warmup_seconds + 120
    meter = CpuMeter({"server": pid}).start()
    result = run_load("bench.grpc_load", args, ctx.folder("grpc"), name, timeout)
    meter.stop()
    answered = result["warmup_n"] + result["create"]["n"] + result["update"]["n"]
    result["cpu_ms"] = meter.per_request_ms(answered).get("server", math.nan)
    return result


def run(ctx: Context) -> Section:
    section = Section("grpc", "2. CreateCall / UpdateCall over gRPC")
    folder = ctx.folder("grpc")
    real: dict[int, dict[str, Any]] = {}
    for concurrency in ctx.settings.grpc_concurrency:
        # A fresh core for each level, so both start from the same empty store.
        with running_stack(folder / f"stack-{concurrency}", gateway=False) as stack:
            assert stack.core is not None
            real[concurrency] = load(
                ctx, stack.grpc_target, stack.core.pid, concurrency, f"core-c{concurrency}"
            )
    echo: dict[int, dict[str, Any]] = {}
    with ceiling_servers(folder) as ceilings:
        for concurrency in ctx.settings.grpc_concurrency:
            name = f"echo-c{concurrency}"
            echo_pid = ceilings.pids["echo"]
            echo[concurrency] = load(ctx, ceilings.echo_target, echo_pid, concurrency, name)

    section.headers = ["rpc", "callers", "core req/s", "p50 ms", "p99 ms", "errors"]
    section.headers += ["echo req/s", "echo p50 ms", "echo p99 ms", "core / echo"]
    for rpc, key in (("CreateCall", "create"), ("UpdateCall", "update")):
        for concurrency in ctx.settings.grpc_concurrency:
            r, e = real[concurrency][key], echo[concurrency][key]
            value = ratio(r["rps"], e["rps"])
            section.rows.append(
                [
                    rpc,
                    str(concurrency),
                    fmt(r["rps"]),
                    fmt(r["p50_ms"], 2),
                    fmt(r["p99_ms"], 2),
                    str(r["errors"]),
                    fmt(e["rps"]),
                    fmt(e["p50_ms"], 2),
                    fmt(e["p99_ms"], 2),
                    fmt(value, 3),
                ]
            )
            section.verdicts.append(
                Verdict(
                    f"{rpc} req/s at {concurrency} caller(s), core / echo",
                    fmt(value, 3),
                    f">= {GOAL}",
                    value >= GOAL,
                )
            )
            repeated = real[concurrency][key].get("repeated", 0)
            if repeated:
                section.notes.append(
                    f"UpdateCall at {concurrency} caller(s): {repeated} updates went round again "
                    "(answered -> answered) after every created call had been answered."
                )
    for concurrency in ctx.settings.grpc_concurrency:
        core_ms, echo_ms = real[concurrency]["cpu_ms"], echo[concurrency]["cpu_ms"]
        section.verdicts.append(
            Verdict(
                f"CPU ms per request at {concurrency} caller(s), core (echo: {fmt(echo_ms, 3)})",
                fmt(core_ms, 3),
                "(reported)",
                None,
            )
        )
    section.notes.append(
        "CPU ms per request: the server process's user + system CPU time over the whole load "
        "(warm-up, CreateCall and UpdateCall windows) divided by the requests it answered."
    )
    s = ctx.settings
    section.notes.append(
        f"python -m bench.grpc_load: {s.warmup_seconds:g} s warm-up, then {s.grpc_seconds:g} s "
        "of CreateCall (a new pbx_call_id each), then the same of UpdateCall to answered by "
        "call_id over the calls created; the echo server answers both with a fixed Call."
    )
    return section
