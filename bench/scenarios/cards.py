"""3. Card delivery latency, from just before the POST to the gateway is written to when each
subscriber reads the card, at 10, 100, 1,000 and 5,000 subscribers, over gRPC
(WatchCallCards, straight from core) and SSE (the gateway's card stream, delivered from its
one card feed from core), beside the same chain with no rules (relay app + echo server
fanning out). Goals: p99 within 2x of the ceiling's at 10, 100 and 1,000 subscribers on
both transports; 5,000 subscribers held with none missing. Reported beside them at the
first level: the durable ceiling, the same chain with the echo server committing each call
to an SQLite file first, as durably as core does."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.cards_load import DELIVERIES, EVENTS, WARMUP_ROUNDS
from bench.context import Context, Section, Verdict, ceiling_servers, fmt, ratio
from bench.cpu import wait_until_idle
from bench.procs import Proc, Stack, python_module, run_load, running_stack
from bench.profile import Profile, Recorder
from bench.seed import write_seed

GOAL_RATIO = 2.0
# Levels the ratio goal applies to; above them the goal is to hold every subscriber.
RATIO_LEVELS = (10, 100, 1000)
LABELS = {"grpc": "gRPC", "sse": "SSE"}
TRANSPORTS = ("grpc", "sse")
# The level profiled, and how long its subscribers get to connect before recording starts.
PROFILE_LEVEL = 1000
PROFILE_CONNECT_SECONDS = 4.0


def load(
    ctx: Context, transport: str, http: str, grpc: str, name: str, levels: tuple[int, ...] = ()
) -> dict[str, Any]:
    levels_arg = ",".join(str(n) for n in levels or ctx.settings.card_levels)
    args = ["--transport", transport, "--http", http, "--grpc", grpc, "--levels", levels_arg]
    return run_load("bench.cards_load", args, ctx.folder("cards"), name, timeout=900)


def run(ctx: Context) -> Section:
    section = Section("cards", "3. Card delivery latency (POST to the gateway -> subscriber)")
    folder = ctx.folder("cards")
    seed = write_seed(folder / "seed.json", ctx.settings.card_levels)
    full: dict[str, dict[str, Any]] = {}
    with running_stack(folder / "stack", seed=seed) as stack:
        assert stack.core is not None and stack.gateway is not None
        for transport in TRANSPORTS:
            # The previous transport's 5,000 streams are closed and collected first.
            wait_until_idle([stack.core.pid, stack.gateway.pid])
            full[transport] = load(ctx, transport, stack.http_url, stack.grpc_target, transport)
        if ctx.settings.profile and PROFILE_LEVEL in ctx.settings.card_levels:
            section.profiles = profile(ctx, stack, folder)
            section.profile_caption = (
                f"during extra rounds at {PROFILE_LEVEL:,} subscribers: core while it serves "
                "gRPC subscribers, then gateway and core while the gateway serves SSE ones"
            )
    bare: dict[str, dict[str, Any]] = {}
    with ceiling_servers(folder) as ceilings:
        for transport in TRANSPORTS:
            wait_until_idle([ceilings.pids["echo"], ceilings.pids["relay"]])
            bare[transport] = load(
                ctx, transport, ceilings.relay_url, ceilings.echo_target, f"ceiling-{transport}"
            )
    # The first level again, each call committed before it is fanned out.
    first_level = ctx.settings.card_levels[:1]
    durable: dict[str, dict[str, Any]] = {}
    with ceiling_servers(folder, durable=True) as ceilings:
        for transport in TRANSPORTS:
            wait_until_idle([ceilings.pids["echo"], ceilings.pids["relay"]])
            durable[transport] = load(
                ctx,
                transport,
                ceilings.relay_url,
                ceilings.echo_target,
                f"durable-ceiling-{transport}",
                first_level,
            )

    section.headers = ["transport", "subscribers", "deliveries", "missing", "p50 ms", "p99 ms"]
    section.headers += ["max ms", "ceiling p50 ms", "ceiling p99 ms", "p99 / ceiling"]
    section.headers += ["POST -> first p50 ms", "ceiling first p50 ms", "POST p50 ms", "connect s"]
    for transport in TRANSPORTS:
        pairs = list(zip(full[transport]["levels"], bare[transport]["levels"], strict=True))
        for level, ceiling in pairs:
            section.rows.append(_row(transport, level, ceiling))
            section.verdicts.append(_verdict(transport, level, ceiling))
        level, ceiling = pairs[0]
        section.verdicts.append(
            Verdict(
                f"{LABELS[transport]} delay from POST to the first subscriber, p50 at "
                f"{level['subscribers']} subscribers (ceiling {fmt(ceiling['first_p50_ms'])} ms)",
                f"{fmt(level['first_p50_ms'])} ms",
                "(reported)",
                None,
            )
        )
        section.verdicts.append(_durable_verdict(transport, level, durable[transport]["levels"][0]))
    _notes(section)
    return section


def profile(ctx: Context, stack: Stack, folder: Path) -> list[Profile]:
    """py-spy on core while PROFILE_LEVEL gRPC subscribers get cards, then on the gateway
    and core while as many SSE subscribers do."""
    assert stack.gateway is not None and stack.core is not None
    seconds = ctx.settings.profile_seconds
    targets = {
        "grpc": {"core (gRPC subscribers)": stack.core.pid},
        "sse": {
            "gateway (SSE subscribers)": stack.gateway.pid,
            "core (SSE subscribers, through the gateway's feed)": stack.core.pid,
        },
    }
    profiles: list[Profile] = []
    for transport, pids in targets.items():
        args = ["--transport", transport, "--http", stack.http_url, "--grpc", stack.grpc_target]
        args += ["--levels", str(PROFILE_LEVEL), "--events", "1000", "--samples", "10000000"]
        args += ["--prefix", f"p{transport}{time.time_ns()}"]
        # Rounds enough to outlast the recording; stopped once it is done.
        load_proc = Proc(f"profile-{transport}", python_module("bench.cards_load", *args), folder)
        try:
            time.sleep(PROFILE_CONNECT_SECONDS)
            recorders = [Recorder(name, pid, seconds, folder) for name, pid in pids.items()]
            profiles += [p for p in (r.finish() for r in recorders) if p is not None]
        finally:
            load_proc.stop()
    return profiles


def _row(transport: str, level: dict[str, Any], ceiling: dict[str, Any]) -> list[str]:
    return [
        LABELS[transport],
        f"{level['subscribers']:,}",
        str(level["deliveries"]),
        str(level["missing"]),
        fmt(level["p50_ms"]),
        fmt(level["p99_ms"]),
        fmt(level["max_ms"]),
        fmt(ceiling["p50_ms"]),
        fmt(ceiling["p99_ms"]),
        fmt(ratio(level["p99_ms"], ceiling["p99_ms"]), 2),
        fmt(level["first_p50_ms"]),
        fmt(ceiling["first_p50_ms"]),
        fmt(level["post_p50_ms"]),
        fmt(level["connect_seconds"]),
    ]


def _verdict(transport: str, level: dict[str, Any], ceiling: dict[str, Any]) -> Verdict:
    n = level["subscribers"]
    times = f"{fmt(level['p99_ms'])} ms vs {fmt(ceiling['p99_ms'])} ms"
    if n in RATIO_LEVELS:
        value = ratio(level["p99_ms"], ceiling["p99_ms"])
        return Verdict(
            f"{LABELS[transport]} card p99 / ceiling p99 at {n:,} subscribers",
            f"{fmt(value, 2)} ({times})",
            f"<= {GOAL_RATIO:g}",
            value <= GOAL_RATIO and level["missing"] == 0,
        )
    return Verdict(
        f"{LABELS[transport]} {n:,} subscribers held: deliveries missing",
        f"{level['missing']} of {level['deliveries'] + level['missing']} (p99 {times})",
        "0",
        level["missing"] == 0 and level["deliveries"] > 0,
    )


def _durable_verdict(transport: str, level: dict[str, Any], durable: dict[str, Any]) -> Verdict:
    value = ratio(level["p99_ms"], durable["p99_ms"])
    return Verdict(
        f"{LABELS[transport]} card p99 / durable ceiling p99 at {level['subscribers']:,} "
        f"subscribers (durable ceiling p50 {fmt(durable['p50_ms'])} ms, POST -> first "
        f"{fmt(durable['first_p50_ms'])} ms)",
        f"{fmt(value, 2)} ({fmt(level['p99_ms'])} ms vs {fmt(durable['p99_ms'])} ms)",
        "(reported)",
        None,
    )


def _notes(section: Section) -> None:
    section.notes.append(
        "python -m bench.cards_load: subscribers and poster in one process, one monotonic clock. "
        "Per level the poster posts create_call (ringing, group_ids[] = a group of exactly the "
        "subscribed employees) and, once every subscriber has the card (show), update_call to "
        "answered (hide); both events are timed for every subscriber, after "
        f"{WARMUP_ROUNDS} untimed rounds (on the ceiling too), up to {EVENTS} events and "
        f"about {DELIVERIES:,} deliveries a level (the table's deliveries column). gRPC "
        "subscribers are "
        "WatchCallCards streams straight to core (service token naming the employee) over one "
        "channel per 100; SSE subscribers use their own employee tokens (bench seed) at the "
        'gateway. "POST -> first" is the earliest subscriber\'s latency of each event (the '
        "time until the first subscriber has it); the spread above it is the fan-out. POST is "
        "the poster's own round trip; connect is the time to open every subscriber's stream. "
        "Before each transport's levels the servers are left to settle (each under 5 % of a "
        "CPU for half a second, 20 s at most): the previous transport's 5,000 streams are "
        "closed and collected before SSE at 10 is timed (on the ceiling too)."
    )
    section.notes.append(
        "The directory holds one telephony employee per subscriber of the largest level "
        "(bench seed), every level runs against it: what core does per request in proportion "
        "to the directory shows in every level's POST and first delivery."
    )
    section.notes.append(
        "Fan-out: core encodes each card event once for all the WatchCallCards streams it goes "
        "to (they send the encoded bytes as they are), and wakes only the streams of the "
        "employees it concerns. Each gateway holds one card feed from core (WatchCardFeed) and "
        "delivers its SSE streams itself, routed by employee, each SSE message serialised once "
        "per event and card change; a stream is opened at core (OpenCardStream) and resumes "
        "from the gateway's window of recent events."
    )
    section.notes.append(
        "At 10 subscribers a card's latency is mostly its request's way through the gateway "
        "and core to a durable COMMIT (section 1's create_call at rest is that way without "
        "the fan-out), which the ceiling does not take: it stores nothing. The durable ceiling "
        "(goals table) takes the least of that way: its echo server commits each call as one "
        "row on a storage thread (WAL, synchronous FULL) before it answers and fans the card "
        "out. Core's COMMIT holds the call with its ticket, contact, event and audience, about "
        "20 pages where the durable ceiling's holds one or two, and comes after the rules that "
        "decide them. A COMMIT waits for the disk's flush, and on a shared virtual disk a flush "
        f"now and then takes tens of milliseconds: the p99 of {EVENTS} events is the latency "
        "of their slowest two."
    )
    section.notes.append(
        "The ceiling is the same chain with no rules: the relay app posts to the echo server, "
        "which fans a card out to its WatchCallCards streams (and to the relay app's SSE "
        "streams, one echo stream each). It bounds what this load process and Python's "
        "gRPC/HTTP stacks reach on this machine."
    )
