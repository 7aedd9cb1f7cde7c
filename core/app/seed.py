"""The seed file (SPEC 9): departments, employees, groups, channels, tokens and contacts
applied at start as upserts, and finished calls to show on a fresh start; safe to apply
twice. A seed may include other seed files, applied before its own entries."""

from __future__ import annotations

import io
import json
import math
import wave
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from core.app import UseCases, units
from core.app.admin import ChannelRef
from core.app.calls import CallCommands
from core.auth import Role, secret_hash
from core.domain import CreateCall, Direction, Status, UpdateCall
from core.model import utc_now
from core.recordings.library import RecordingLibrary


def load_seed(path: Path, including: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The seed in the JSON file `path`, with the files its `include` names (relative to it)
    before its own entries, section by section."""
    path = path.resolve()
    if path in including:
        raise ValueError(f"the seed {path} includes itself")
    seed: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    merged: dict[str, Any] = {}
    for name in seed.pop("include", []):
        for section, entries in load_seed(path.parent / name, (*including, path)).items():
            merged.setdefault(section, []).extend(entries)
    for section, entries in seed.items():
        merged.setdefault(section, []).extend(entries)
    return merged


def apply_seed(
    app: UseCases,
    seed: Mapping[str, Any],
    library: RecordingLibrary | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> None:
    """Apply `seed`; its calls' recordings are stored through `library` (none: left out)."""
    for d in seed.get("departments", []):
        app.directory.upsert_department(int(d["id"]), str(d["name"]))
    for e in seed.get("employees", []):
        app.directory.upsert_employee(int(e["id"]), str(e["name"]), bool(e.get("telephony", False)))
    for g in seed.get("groups", []):
        app.directory.upsert_group(
            int(g["id"]), str(g["name"]), [int(m) for m in g.get("members", [])]
        )
    for c in seed.get("channels", []):
        _seed_channel(app, c)
    for t in seed.get("tokens", []):
        if not app.tokens.known(str(t["token"])):
            app.tokens.issue(
                Role(t["role"]),
                t.get("employee_id"),
                t.get("description", "seed"),
                secret=str(t["token"]),
            )
    for c in seed.get("contacts", []):
        app.directory.upsert_contact(str(c["phone"]), str(c["name"]))
    now = clock()
    for call in seed.get("calls", []):
        _seed_call(app, call, library, now)


def _seed_channel(app: UseCases, seed: Mapping[str, Any]) -> None:
    key = str(seed["key"])
    existing = units.read(
        app.channels.store, lambda uow: uow.channels.by_key_hash(secret_hash(key))
    )
    if existing is None:
        channel, _ = app.channels.create(
            str(seed["name"]),
            int(seed.get("department_id", 0)),
            key,
            channel_id=int(seed.get("id", 0)),
        )
    else:
        channel = app.channels.update(
            existing.channel_id,
            name=str(seed["name"]),
            department_id=int(seed.get("department_id", existing.department_id)),
        )
    for pbx_user_id, employee_id in seed.get("pbx_users", {}).items():
        app.channels.map_pbx_user(channel.channel_id, str(pbx_user_id), int(employee_id))


# --- finished calls -------------------------------------------------------------------------


class _Clock:
    """The time a seeded call's next status is reported at."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _seed_call(
    app: UseCases, seed: Mapping[str, Any], library: RecordingLibrary | None, now: datetime
) -> None:
    """A call as the PBX would have reported it: `statuses` are [status, seconds before the
    seed is applied] pairs, the first one creating the call. A call whose pbx_call_id the
    channel knows already is left as it is."""
    ref = ChannelRef(key=str(seed["channel_key"]))
    channel = app.channels.resolve(ref)
    pbx_call_id = str(seed["pbx_call_id"])
    known = units.read(
        app.calls.store, lambda uow: uow.calls.by_pbx_call_id(channel.channel_id, pbx_call_id)
    )
    if known is not None:
        return
    steps = [(Status(status), timedelta(seconds=float(ago))) for status, ago in seed["statuses"]]
    clock = _Clock(now - steps[0][1])
    commands = CallCommands(
        app.calls.store, region=app.calls.region, recordings=app.calls.recordings, clock=clock
    )
    commands.create_call(
        ref,
        CreateCall(
            direction=Direction(seed["direction"]),
            phone=str(seed["phone"]),
            status=steps[0][0],
            pbx_call_id=pbx_call_id,
            comment=seed.get("comment"),
        ),
    )
    recording_id = _tone(library, channel.channel_id) if seed.get("recording") else None
    _report(commands, ref, clock, seed, steps[1:], now, recording_id)


def _report(
    commands: CallCommands,
    ref: ChannelRef,
    clock: _Clock,
    seed: Mapping[str, Any],
    steps: Sequence[tuple[Status, timedelta]],
    now: datetime,
    recording_id: str | None,
) -> None:
    """The call's later statuses: the first binds it to the seed's PBX user, the last brings
    the recording."""
    for n, (status, ago) in enumerate(steps):
        clock.at = now - ago
        last = n == len(steps) - 1
        commands.update_call(
            ref,
            UpdateCall(
                status=status,
                pbx_call_id=str(seed["pbx_call_id"]),
                pbx_user_id=seed.get("pbx_user_id") if n == 0 else None,
                recording_id=recording_id if last else None,
            ),
        )


# A second and a half of the Russian ringback tone: short, and plainly a test sound.
TONE_HZ = 425
TONE_SECONDS = 1.5
TONE_RATE = 8000


def tone_wav(seconds: float = TONE_SECONDS) -> bytes:
    """A mono 8 kHz 8-bit PCM WAV file of the tone, faded in and out."""
    count = int(TONE_RATE * seconds)
    fade = TONE_RATE // 20
    samples = bytearray()
    for n in range(count):
        envelope = min(1.0, n / fade, (count - 1 - n) / fade)
        level = 0.5 * envelope * math.sin(2 * math.pi * TONE_HZ * n / TONE_RATE)
        # 8-bit WAV samples are unsigned; silence is 128.
        samples.append(128 + round(127 * level))
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(1)
        file.setframerate(TONE_RATE)
        file.writeframes(bytes(samples))
    return out.getvalue()


def _tone(library: RecordingLibrary | None, channel_id: int) -> str | None:
    """A tone stored as an uploaded recording, for a seeded call to take."""
    if library is None:
        return None
    upload = library.start_upload(channel_id, "seed-tone.wav")
    # Both remove what was written when they fail.
    upload.write(tone_wav())
    recording = upload.finish()
    library.save(recording)
    return recording.recording_id
