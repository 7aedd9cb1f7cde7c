"""`python -m bench` (what `make bench` runs): every scenario in one run, a table on the
console, and BENCHMARKS.md at the repository root.

Options: --only pbx,grpc,cards,upload,scale   run some scenarios; --quick   a smoke run
(BENCHMARKS.md is then not written unless --write is given); --no-profile; --keep (keep
the folder of logs).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from bench import machine, report
from bench.context import Context, Section, Settings
from bench.procs import ROOT, Proc
from bench.profile import py_spy_version
from bench.scenarios import SCENARIOS
from bench.wrk import ensure_wrk, wrk_version

COMMAND = "make bench  # = .venv/bin/python -m bench"
QUICK = Settings(
    http_seconds=2.0,
    grpc_seconds=2.0,
    card_levels=(10, 100),
    upload_mb=50,
    scale_sizes=(300, 600),
    scale_probe_seconds=1.0,
    profile_seconds=2.0,
    total_budget_seconds=240.0,
)


def _raise_file_limit() -> None:
    # A thousand card streams need a thousand sockets in the gateway and in the load process.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(SCENARIOS))
    parser.add_argument("--write", action="store_true", help="write BENCHMARKS.md with --only")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--quick", action="store_true", help="short windows and small sizes (a smoke run)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the folder of logs")
    args = parser.parse_args()
    chosen = [k.strip() for k in args.only.split(",") if k.strip()] or list(SCENARIOS)
    unknown = [k for k in chosen if k not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    base = QUICK if args.quick else Settings()
    settings = dataclasses.replace(base, profile=not args.no_profile)

    signal.signal(signal.SIGTERM, _stop_on_signal)
    _raise_file_limit()
    workdir = Path(tempfile.mkdtemp(prefix="vats-bench-"))
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = machine.describe()
    print(f"vats-bridge benchmarks, {date}")
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['memory']}, {info['python']}")
    print(f"logs: {workdir}")
    wrk = ensure_wrk()
    tools = {"wrk": wrk_version(wrk), "py-spy": py_spy_version()}
    ctx = Context(settings, workdir, wrk)
    sections: list[Section] = []
    failed = False
    try:
        for key in chosen:
            title, scenario = SCENARIOS[key]
            print(f"\n-- running {key}: {title} (at {ctx.elapsed():.0f} s)", flush=True)
            began = time.monotonic()
            try:
                section = scenario(ctx)
            except Exception as error:
                traceback.print_exc()
                section = Section(key, title, error=f"{type(error).__name__}: {error}"[:2000])
                failed = True
            section.seconds = time.monotonic() - began
            sections.append(section)
            try:
                report.print_section(section)
            except Exception:
                traceback.print_exc()
                failed = True
    finally:
        Proc.stop_all()
    report.print_summary(sections, ctx.elapsed())
    if args.write or not (args.only or args.quick):
        target = ROOT / "BENCHMARKS.md"
        report.write_markdown(
            target,
            sections,
            command=COMMAND if not args.only else f"python -m bench --only {args.only}",
            date=date,
            machine=info,
            tools=tools,
            seconds=ctx.elapsed(),
        )
        print(f"\nwrote {target}")
    if args.keep or failed:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
