"""5. Cost per request against the number of stored calls on the embedded store.

Calls are seeded through the real code path (gRPC CreateCall, many concurrent callers); at
each size the cost of a create_call + update_call pair through the gateway and of ListCalls
is measured. Seeding gets what is left of the run's time budget: a size it cannot reach in
time is reported as reached-so-far, with an estimate of what the full size would take.
"""

from __future__ import annotations

import time
from typing import Any

from bench.context import Context, Section, Verdict, fmt
from bench.procs import run_load, running_stack

SEED_CONCURRENCY = 16
# Kept back from seeding: the last probes and writing the report.
RESERVE_SECONDS = 20.0


def seed(ctx: Context, target: str, count: int, max_seconds: float) -> dict[str, Any]:
    args = ["seed", "--target", target, "--count", str(count), "--prefix", f"seed{time.time_ns()}"]
    args += ["--concurrency", str(SEED_CONCURRENCY), "--channels", "2"]
    args += ["--max-seconds", str(max_seconds)]
    return run_load("bench.grpc_load", args, ctx.folder("scale"), "seed", max_seconds + 120)


def probe(ctx: Context, calls_url: str, target: str) -> dict[str, Any]:
    seconds = ctx.settings.scale_probe_seconds
    args = ["--calls-url", calls_url, "--grpc", target, "--seconds", str(seconds)]
    return run_load("bench.scale_load", args, ctx.folder("scale"), "probe", 600)


def run(ctx: Context) -> Section:
    section = Section("scale", "5. Cost per request against stored calls (embedded store)")
    folder = ctx.folder("scale")
    sizes = ctx.settings.scale_sizes
    probe_cost = 2 * ctx.settings.scale_probe_seconds + 3
    rows: list[dict[str, Any]] = []
    stored = 0
    seed_total = 0.0
    last_step: tuple[int, int, float] | None = None  # from, to, seconds
    with running_stack(folder / "stack") as stack:
        for target in sizes:
            need = target - stored
            if need > 0:
                budget = ctx.remaining() - RESERVE_SECONDS - probe_cost
                if budget < 5:
                    section.notes.append(f"No time left to seed towards {target:,} calls.")
                    break
                result = seed(ctx, stack.grpc_target, need, budget)
                if result["count"]:
                    last_step = (stored, stored + result["count"], result["seconds"])
                stored += result["count"]
                seed_total += result["seconds"]
                step_rate = result["rate"]
            else:
                step_rate = float("nan")
            measured = probe(ctx, stack.calls_url, stack.grpc_target)
            rows.append(
                {"target": target, "stored": stored, "seed_s": seed_total, "rate": step_rate}
                | measured
            )
            stored += measured["pair"]["n"] + measured["pair"]["errors"]
            if rows[-1]["stored"] < target:
                break

    section.headers = ["target", "stored calls", "seeding s (total)", "seed calls/s (step)"]
    section.headers += ["create+update p50 ms", "p99 ms", "ListCalls p50 ms", "p99 ms"]
    for row in rows:
        section.rows.append(
            [
                f"{row['target']:,}",
                f"{row['stored']:,}",
                fmt(row["seed_s"]),
                fmt(row["rate"]),
                fmt(row["pair"]["p50_ms"]),
                fmt(row["pair"]["p99_ms"]),
                fmt(row["list"]["p50_ms"]),
                fmt(row["list"]["p99_ms"]),
            ]
        )
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        calls_x = last["stored"] / max(1, first["stored"])
        for key, label in (("pair", "create+update"), ("list", "ListCalls")):
            grow = last[key]["p50_ms"] / first[key]["p50_ms"]
            section.verdicts.append(
                Verdict(
                    f"{label} p50 growth, {first['stored']:,} -> {last['stored']:,} calls "
                    f"(x{calls_x:.1f})",
                    f"x{grow:.1f}",
                    "flat (reported)",
                    None,
                )
            )
    reached = rows[-1]["stored"] if rows else 0
    unreached = [t for t in sizes if t > reached]
    if unreached and last_step is not None:
        start, end, seconds = last_step
        # Per-create time grows with the store: fit t(n) = c * n to the last seeding step.
        c = seconds / (end - start) / max(1.0, (start + end) / 2)
        estimates = ", ".join(
            f"{t:,}: ~{c * (t * t - end * end) / 2 / 60:,.0f} min more" for t in unreached
        )
        section.notes.append(
            f"Seeding was cut to fit the run: {reached:,} calls stored after {seed_total:.0f} s "
            f"of seeding. Per-create cost grows about linearly with the store; at that pace the "
            f"unreached sizes would need {estimates}."
        )
    section.notes.append(
        f"Seeded with python -m bench.grpc_load seed ({SEED_CONCURRENCY} concurrent CreateCall "
        "callers, service token, new pbx_call_id each: the full create path with its ticket, "
        "contact and event). Probes: python -m bench.scale_load, one caller, "
        f"{ctx.settings.scale_probe_seconds:g} s of multipart create_call+update_call pairs "
        "through the gateway, then ListCalls (page of 50, newest first) over gRPC."
    )
    return section
