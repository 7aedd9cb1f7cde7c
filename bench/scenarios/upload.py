"""4. A 200 MB recording (valid WAV header + PCM) uploaded with create_call through the gateway,
streamed by the load process: MB/s and peak RSS growth of the gateway and of core, beside the
relay app streaming to the echo server. Goal: < 32 MB growth per process."""

from __future__ import annotations

from typing import Any

from bench.context import Context, Section, Verdict, ceiling_servers, fmt, ratio
from bench.procs import CHANNEL_KEY, run_load, running_stack
from bench.rss import RssSampler

GOAL_MB = 32.0


def upload(ctx: Context, url: str, pids: dict[str, int], name: str) -> dict[str, Any]:
    sampler = RssSampler(pids).start()
    try:
        args = ["--url", url, "--mb", str(ctx.settings.upload_mb)]
        result = run_load("bench.upload_load", args, ctx.folder("upload"), name, timeout=300)
    finally:
        result_rss = sampler.stop()
    result["rss"] = result_rss
    return result


def run(ctx: Context) -> Section:
    section = Section("upload", f"4. Recording upload, {ctx.settings.upload_mb} MB WAV")
    folder = ctx.folder("upload")
    limit = {"VATS_MAX_RECORD_MB": str(max(256, ctx.settings.upload_mb + 8))}
    with running_stack(folder / "stack", extra_env=limit) as stack:
        assert stack.gateway is not None and stack.core is not None
        pids = {"gateway": stack.gateway.pid, "core": stack.core.pid}
        full = upload(ctx, f"{stack.calls_url}", pids, "full")
    with ceiling_servers(folder) as ceilings:
        pids = {"relay app": ceilings.pids["relay"], "echo server": ceilings.pids["echo"]}
        bare = upload(
            ctx, f"{ceilings.relay_url}/api/v2/telephony/calls/{CHANNEL_KEY}", pids, "relay"
        )

    section.headers = ["setup", "HTTP", "MB/s", "seconds", "process", "RSS before MB"]
    section.headers += ["RSS peak MB", "growth MB", "VmHWM after MB"]
    for label, result in (("full path", full), ("relay -> echo (ceiling)", bare)):
        for i, (process, rss) in enumerate(result["rss"].items()):
            section.rows.append(
                [
                    label if i == 0 else "",
                    str(result["status"]) if i == 0 else "",
                    fmt(result["mb_per_s"]) if i == 0 else "",
                    fmt(result["seconds"], 2) if i == 0 else "",
                    process,
                    fmt(rss["rss_before_mb"]),
                    fmt(rss["rss_peak_mb"]),
                    fmt(rss["growth_mb"]),
                    fmt(rss["hwm_after_mb"]),
                ]
            )
    for process, rss in full["rss"].items():
        section.verdicts.append(
            Verdict(
                f"upload: {process} peak RSS growth",
                f"{fmt(rss['growth_mb'])} MB",
                f"< {GOAL_MB:g} MB",
                rss["growth_mb"] < GOAL_MB and full["status"] == 200,
            )
        )
    value = ratio(full["mb_per_s"], bare["mb_per_s"])
    section.verdicts.append(
        Verdict("upload MB/s, full path / ceiling", fmt(value, 2), "(reported)", None)
    )
    if full["status"] != 200:
        section.notes.append(f"The full path answered HTTP {full['status']}: {full['reply']}")
    section.notes.append(
        "python -m bench.upload_load streams a multipart create_call whose audio_record is a "
        "44-byte WAV header (PCM 8 kHz 16-bit mono) and the PCM, 256 KiB at a time; "
        "VATS_MAX_RECORD_MB=256. RSS is sampled every 20 ms from /proc/<pid>/status; growth is "
        "the peak VmRSS during the upload minus VmRSS before it."
    )
    return section
