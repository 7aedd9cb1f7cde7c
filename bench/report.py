"""The console table and BENCHMARKS.md."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.context import Section, Verdict
from bench.profile import Profile

MARK = {True: "yes", False: "NO", None: "-"}


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict_rows(verdicts: Sequence[Verdict]) -> list[list[str]]:
    return [[v.measure, v.value, v.goal, MARK[v.met]] for v in verdicts]


GOAL_HEADERS = ["measure", "value", "goal", "met"]


def print_section(section: Section) -> None:
    print(f"\n== {section.title}  ({section.seconds:.0f} s)")
    if section.error:
        print(f"   FAILED: {section.error}")
        return
    print(text_table(section.headers, section.rows))
    if section.verdicts:
        print()
        print(text_table(GOAL_HEADERS, verdict_rows(section.verdicts)))


def print_summary(sections: Sequence[Section], seconds: float) -> None:
    verdicts = [v for s in sections for v in s.verdicts]
    print(f"\n== Goals (whole run {seconds:.0f} s)")
    print(text_table(GOAL_HEADERS, verdict_rows(verdicts)))


def _profile_md(profile: Profile) -> list[str]:
    lines = [f"**{profile.name}** ({profile.samples} samples)", ""]
    lines.append("Self time by area:")
    lines.append("")
    lines.append(
        md_table(["area", "% of samples"], [[a, f"{p:.1f}"] for a, p in profile.top_files()])
    )
    lines.append("")
    lines.append("Hottest frames (self):")
    lines.append("")
    lines.append(md_table(["frame", "% self"], [[f, f"{p:.1f}"] for f, p in profile.top_self()]))
    lines.append("")
    lines.append("Innermost project function -> what it was calling:")
    lines.append("")
    sites = [[f, f"{p:.1f}"] for f, p in profile.top_call_sites()]
    lines.append(md_table(["call site", "% of samples"], sites))
    lines.append("")
    lines.append("Project functions (inclusive):")
    lines.append("")
    own = [[f, f"{p:.1f}"] for f, p in profile.top_own_code()]
    lines.append(md_table(["function", "% inclusive"], own))
    lines.append("")
    return lines


def write_markdown(
    path: Path,
    sections: Sequence[Section],
    *,
    command: str,
    date: str,
    machine: dict[str, str],
    tools: dict[str, str],
    seconds: float,
) -> None:
    out = ["# Benchmarks", ""]
    out.append(
        "Measured by the harness in `bench/` (`make bench`, which runs `python -m bench`). "
        "Load always comes from a separate process (wrk for HTTP, a grpc.aio load process for "
        "gRPC), on the same machine as the servers, so each scenario is measured beside its "
        "*ceiling* in the same run: the same transports with no product logic. The machine is "
        "shared and noisy; the **ratios** to the ceiling are what count, absolute numbers vary."
    )
    out += ["", f"- Command: `{command}`", f"- Date: {date}", f"- Whole run: {seconds:.0f} s"]
    out.append(
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory']} memory; "
        f"{machine['os']}; {machine['python']}"
    )
    out.append(f"- Packages: {machine['packages']}")
    out.append("- Tools: " + ", ".join(f"{k} ({v})" for k, v in tools.items()))
    out += ["", "## Goals", ""]
    verdicts = [v for s in sections for v in s.verdicts]
    out.append(md_table(GOAL_HEADERS, verdict_rows(verdicts)))
    out.append("")
    for section in sections:
        out += [f"## {section.title}", ""]
        if section.error:
            out += [f"Not measured: {section.error}", ""]
            continue
        out += [md_table(section.headers, section.rows), ""]
        for note in section.notes:
            out += [f"- {note}"]
        out.append("")
        if section.profiles:
            out += [f"### Profiles (py-spy, {section.profile_caption})", ""]
            out.append(
                "Samples are of busy threads only (py-spy without --idle). Self time of "
                "`asyncio/runners.py:Runner.run` or `asyncio/events.py:Handle._run` is the event "
                "loop's own C code (uvloop / grpc.aio: sockets, callbacks, serialization)."
            )
            out.append("")
            for profile in section.profiles:
                out += _profile_md(profile)
    path.write_text("\n".join(out).rstrip() + "\n", encoding="utf-8")
