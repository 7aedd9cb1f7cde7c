"""5. Cost per request against the number of stored calls, on SQLite (the default store).

One data directory per size. Each is grown offline from a copy of the one before, through
the same use cases core runs (bench.store_seed: create_call then update_call per call, each
a unit of work with a durable commit). Then, round after round, core starts as a real
process on each directory in turn (its start-up timed), the gateway in front of it, and the
probes (bench.scale_load) go over real sockets; taking the sizes in turn, round after round,
spreads the noise of a shared machine over all of them. Goal: each p50 grows no more than
x1.5 from the first size to the last.
"""

from __future__ import annotations

import shutil
import statistics
from typing import Any

from bench.context import Context, Section, Verdict, fmt
from bench.procs import Stack, run_load
from bench.seed import RARE_CALLS, RARE_EMPLOYEE, RARE_PHONE, RARE_STATUS, write_scale_seed

GOAL = 1.5
# Rounds over the sizes; every size is started and probed once per round.
ROUNDS = 3
PAGE = 50
QUERIES = (
    ("all", "no filter"),
    ("phone", "phone"),
    ("employee", "employee"),
    ("status", "status"),
)
# The probe's page measurements, by their key in its output.
PAGES = tuple(f"{kind}_{name}" for kind in ("list", "history") for name, _ in QUERIES)


def seed(ctx: Context, stack: Stack, first: int, count: int, max_seconds: float) -> Any:
    args = ["--first", str(first), "--count", str(count), "--max-seconds", str(max_seconds)]
    folder = ctx.folder("scale")
    return run_load("bench.store_seed", args, folder, "seed", max_seconds + 300, env=stack.env)


def probe(ctx: Context, stack: Stack) -> dict[str, Any]:
    args = ["--calls-url", stack.calls_url, "--history-url", stack.history_url]
    args += ["--grpc", stack.grpc_target, "--seconds", str(ctx.settings.scale_probe_seconds)]
    return run_load("bench.scale_load", args, ctx.folder("scale"), "probe", 600)


def rounds_cost(ctx: Context, stores: int) -> float:
    """Seconds the probe rounds take: start-ups, warm-ups and ten probe windows per store."""
    return ROUNDS * stores * (10 * ctx.settings.scale_probe_seconds + 8) + 30


def run(ctx: Context) -> Section:
    section = Section("scale", "5. Cost per request against stored calls (SQLite)")
    folder = ctx.folder("scale")
    sizes = ctx.settings.scale_sizes
    seed_file = write_scale_seed(folder / "seed.json")
    empty = Stack(folder / "empty", seed=seed_file)
    stores: list[dict[str, Any]] = []
    seeded = 0  # calls stored by the seeder, numbered from 0 on
    try:
        for target in sizes:
            stack = Stack(folder / f"calls-{target}", seed=seed_file)
            if stores:
                shutil.copytree(stores[-1]["stack"].workdir / "data", stack.workdir / "data")
            budget = ctx.remaining() - rounds_cost(ctx, len(stores) + 1)
            if budget < 5:
                section.notes.append(f"No time was left to seed towards {target:,} calls.")
                break
            step = seed(ctx, stack, seeded, target - seeded, budget)
            seeded += step["count"]
            stores.append({"target": target, "stack": stack, "step": step, "rounds": []})
            if seeded < target:
                break
        empty_starts: list[float] = []
        for _ in range(ROUNDS):
            empty_starts.append(empty.start_core())
            empty.stop()
            for store in stores:
                stack = store["stack"]
                started = stack.start_core()
                stack.start_gateway()
                try:
                    store["rounds"].append(probe(ctx, stack) | {"start": started})
                finally:
                    stack.stop()
    finally:
        empty.stop()
        for store in stores:
            store["stack"].stop()

    columns = [_column(store) for store in stores]
    _table(section, columns, empty_starts)
    _verdicts(section, columns, sizes, empty_starts)
    _notes(section, ctx, columns, sizes)
    return section


def _column(store: dict[str, Any]) -> dict[str, Any]:
    """A size's figures: each p50 and p99 is the median over the rounds."""
    rounds = store["rounds"]
    column: dict[str, Any] = {
        "target": store["target"],
        "stored": store["step"]["stored"],
        "step": store["step"],
        "starts": [r["start"] for r in rounds],
        "probe_calls": sum(r["pair"]["stored"] for r in rounds),
    }
    for key in ("pair", *PAGES):
        column[key] = {
            "p50_ms": statistics.median(r[key]["p50_ms"] for r in rounds),
            "p99_ms": statistics.median(r[key]["p99_ms"] for r in rounds),
            "errors": sum(r[key]["errors"] for r in rounds),
            "items": min(r[key].get("items", PAGE) for r in rounds),
        }
    return column


def _p50(column: dict[str, Any], key: str) -> float:
    return float(column[key]["p50_ms"])


def _growth(columns: list[dict[str, Any]], key: str) -> float:
    return _p50(columns[-1], key) / _p50(columns[0], key)


def _table(section: Section, columns: list[dict[str, Any]], empty: list[float]) -> None:
    section.headers = ["measure", "empty store"]
    section.headers += [f"{c['stored']:,} calls" for c in columns]
    section.headers += ["growth, first -> last"]

    def row(label: str, key: str, stat: str = "p50_ms") -> None:
        growth = f"x{_growth(columns, key):.2f}" if stat == "p50_ms" and columns else "-"
        values = [fmt(c[key][stat]) for c in columns]
        section.rows.append([label, "", *values, growth])

    row("create+update pair p50 ms (gateway)", "pair")
    row("create+update pair p99 ms", "pair", "p99_ms")
    for key, label in QUERIES:
        row(f"ListCalls p50 ms, {label} (gRPC)", f"list_{key}")
    for key, label in QUERIES:
        row(f"history p50 ms, {label} (gateway)", f"history_{key}")
    if empty:
        section.rows.append(
            [
                "core start-up s, first start",
                fmt(empty[0], 2),
                *[fmt(c["starts"][0], 2) for c in columns],
                "-",
            ]
        )
        section.rows.append(
            [
                f"core start-up s, median of {len(empty)}",
                fmt(statistics.median(empty), 2),
                *[fmt(statistics.median(c["starts"]), 2) for c in columns],
                "-",
            ]
        )
    section.rows.append(
        ["seeding: calls/s (units of work/s)", "", *[_rate(c["step"]) for c in columns], "-"]
    )
    section.rows.append(
        [
            "seeding: create_call / update_call p50 ms in process",
            "",
            *[_unit_costs(c["step"]) for c in columns],
            "-",
        ]
    )


def _rate(step: dict[str, Any]) -> str:
    return f"{fmt(step['rate'])} ({fmt(step['units_per_s'])})" if step["count"] else "-"


def _unit_costs(step: dict[str, Any]) -> str:
    if not step["count"]:
        return "-"
    return f"{fmt(step['create']['p50_ms'], 2)} / {fmt(step['update']['p50_ms'], 2)}"


def _verdicts(
    section: Section, columns: list[dict[str, Any]], sizes: tuple[int, ...], empty: list[float]
) -> None:
    if len(columns) < 2:
        return
    first, last = columns[0], columns[-1]
    reached = last["stored"] >= sizes[-1]
    span = f"{first['stored']:,} -> {last['stored']:,} calls"
    measures = [("pair", "create+update p50")]
    measures += [(f"list_{k}", f"ListCalls p50, {label}") for k, label in QUERIES]
    measures += [(f"history_{k}", f"history p50, {label}") for k, label in QUERIES]
    for key, label in measures:
        growth = _growth(columns, key)
        section.verdicts.append(
            Verdict(
                f"{label} growth, {span}",
                f"x{growth:.2f}",
                f"<= x{GOAL}" + ("" if reached else f" at {sizes[-1]:,}"),
                (growth <= GOAL) if reached else False,
            )
        )
    if empty:
        section.verdicts.append(
            Verdict(
                f"core start-up, {last['stored']:,} calls (empty store: "
                f"{statistics.median(empty):.2f} s)",
                f"{statistics.median(last['starts']):.2f} s",
                "(reported)",
                None,
            )
        )


def _notes(
    section: Section, ctx: Context, columns: list[dict[str, Any]], sizes: tuple[int, ...]
) -> None:
    steps = [c["step"] for c in columns]
    seed_seconds = sum(s["seconds"] for s in steps)
    reached = columns[-1]["stored"] if columns else 0
    if reached < sizes[-1] and steps and steps[-1]["rate"]:
        rate = steps[-1]["rate"]
        section.notes.append(
            f"Seeding was cut to fit the run: {reached:,} calls stored after "
            f"{seed_seconds:.0f} s of seeding; at the last step's {rate:,.0f} calls/s, "
            f"{sizes[-1]:,} would need ~{(sizes[-1] - reached) / rate / 60:,.1f} min more."
        )
    short = [
        f"{key} at {c['stored']:,} ({c[key]['items']} calls)"
        for c in columns
        for key in PAGES
        if c[key]["items"] != PAGE
    ]
    if short:
        section.notes.append(
            f"Pages that were not full ({PAGE} calls), so cheaper than the rest: "
            + ", ".join(short)
            + "."
        )
    errors = sum(c[key]["errors"] for c in columns for key in ("pair", *PAGES))
    if errors:
        section.notes.append(f"{errors} probe request(s) failed and are left out of the times.")
    s = ctx.settings
    section.notes.append(
        "Seeding: python -m bench.store_seed, with no core running, wires core from the same "
        "environment as core.server does and stores each call as the PBX makes it, "
        "create_call (ringing) then update_call to its end, each its own unit of work with a "
        f"durable commit: {seed_seconds:.0f} s in all. Only the transport is left out; no "
        "bulk path. Each size starts from a copy of the size before it; the in-process p50s "
        "are over the last 1,000 calls of the step."
    )
    section.notes.append(
        f"Filters: the rare caller's {RARE_CALLS} calls are among the oldest 1,000 and the only "
        f"ones from {RARE_PHONE}, ending {RARE_STATUS} and bound to employee {RARE_EMPLOYEE}, "
        f"so each filtered page is a full page of {PAGE} at every size, ever deeper in the "
        "store (a filter walking the newest calls instead of an index would grow with it). "
        "Other calls: 20,000 callers, group or single-employee audiences, answered / missed / "
        "busy / canceled."
    )
    probe_calls = ", ".join(f"{c['probe_calls']:,}" for c in columns)
    section.notes.append(
        f"Probes: {ROUNDS} rounds over the sizes in turn, each starting core and the gateway "
        f"afresh; every figure is the median of the rounds. A round runs python -m "
        f"bench.scale_load, one caller: {s.scale_probe_seconds:g} s of multipart create_call + "
        "update_call (answered) pairs through the gateway, then "
        f"{s.scale_probe_seconds:g} s of each first page ({PAGE}, newest first): ListCalls "
        "straight to core over gRPC, and GET /api/v2/telephony/history through the gateway; "
        f"each after 5 untimed requests. The pairs added {probe_calls} calls to the sizes over "
        "the rounds."
    )
    section.notes.append(
        "Start-up: from starting `python -m core` to its gRPC health check answering SERVING "
        "(polled every 10 ms); the first start of a size follows its seeding, the others are "
        "plain restarts. The empty store holds the seed and no calls."
    )
