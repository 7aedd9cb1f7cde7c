"""2. CreateCall / UpdateCall straight over gRPC at 1 and 32 concurrent callers (a separate
load process), beside a bare grpc.aio echo server. Goal: >= 0.5 x echo."""

from __future__ import annotations

from typing import Any

from bench.context import Context, Section, Verdict, ceiling_servers, fmt, ratio
from bench.procs import run_load, running_stack

GOAL = 0.5


def load(ctx: Context, target: str, concurrency: int, name: str) -> dict[str, Any]:
    s = ctx.settings
    args = ["calls", "--target", target, "--concurrency", str(concurrency)]
    args += ["--duration", str(s.grpc_seconds), "--warmup", str(s.warmup_seconds)]
    args += ["--channels", "1" if concurrency < 8 else "2"]
    timeout = 2 * s.grpc_seconds + s.warmup_seconds + 120
    return run_load("bench.grpc_load", args, ctx.folder("grpc"), name, timeout)


def run(ctx: Context) -> Section:
    section = Section("grpc", "2. CreateCall / UpdateCall over gRPC")
    folder = ctx.folder("grpc")
    real: dict[int, dict[str, Any]] = {}
    for concurrency in ctx.settings.grpc_concurrency:
        # A fresh core for each level, so both start from the same empty store.
        with running_stack(folder / f"stack-{concurrency}", gateway=False) as stack:
            real[concurrency] = load(ctx, stack.grpc_target, concurrency, f"core-c{concurrency}")
    echo: dict[int, dict[str, Any]] = {}
    with ceiling_servers(folder) as ceilings:
        for concurrency in ctx.settings.grpc_concurrency:
            echo[concurrency] = load(ctx, ceilings.echo_target, concurrency, f"echo-c{concurrency}")

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
    s = ctx.settings
    section.notes.append(
        f"python -m bench.grpc_load: {s.warmup_seconds:g} s warm-up, then {s.grpc_seconds:g} s "
        "of CreateCall (a new pbx_call_id each), then the same of UpdateCall to answered by "
        "call_id over the calls created; the echo server answers both with a fixed Call."
    )
    return section
