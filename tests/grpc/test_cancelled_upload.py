"""An UploadRecord the client cancels keeps nothing, whenever the cancellation comes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from core.recordings.library import Upload
from core.server import Core
from telephony.v1 import call_service_pb2, call_service_pb2_grpc
from tests.conftest import bearer
from tests.recordings.recording_samples import pcm_wav

DEMO = call_service_pb2.ChannelRef(channel_key="demo-channel-key")
T = TypeVar("T")


def wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    return pcm_wav(seconds, rate)


def recording_files(core: Core) -> list[Path]:
    return [p for p in (Path(core.config.data_dir) / "recordings").rglob("*") if p.is_file()]


async def stored_recordings(core: Core) -> int:
    def count() -> int:
        with core.store.reading() as uow:
            return sum(1 for _ in uow.recordings.ids())

    return await core.runner.run(count)


@pytest.mark.parametrize("slow_step", ["finish", "save"])
async def test_cancelled_while_core_keeps_the_recording_leaves_nothing(
    core: Core, channel: grpc.aio.Channel, monkeypatch: pytest.MonkeyPatch, slow_step: str
) -> None:
    """The client cancels once core has every chunk and is keeping the recording, on worker
    threads that run on regardless (grpc.aio even ends the request stream as if the client
    were done when it cancels while core waits for a chunk)."""
    loop = asyncio.get_running_loop()
    keeping, kept = asyncio.Event(), asyncio.Event()

    def slowly(step: Callable[..., T]) -> Callable[..., T]:
        # A slow disk: the cancellation lands while this step runs.
        def run(*args: Any) -> T:
            loop.call_soon_threadsafe(keeping.set)
            time.sleep(0.3)
            result = step(*args)
            loop.call_soon_threadsafe(kept.set)
            return result

        return run

    start_upload = core.library.start_upload

    def start(channel_id: int, file_name: str) -> Upload:
        upload = start_upload(channel_id, file_name)
        abort = upload.abort

        def slow_abort() -> None:
            # Cleaning up takes a while too.
            time.sleep(0.6)
            abort()

        if slow_step == "finish":
            monkeypatch.setattr(upload, "finish", slowly(upload.finish))
        monkeypatch.setattr(upload, "abort", slow_abort)
        return upload

    monkeypatch.setattr(core.library, "start_upload", start)
    if slow_step == "save":
        monkeypatch.setattr(core.library, "save", slowly(core.library.save))

    upload = call_service_pb2_grpc.CallServiceStub(channel).UploadRecord(
        metadata=bearer("demo-service")
    )
    metadata = call_service_pb2.UploadRecordRequest.Metadata(channel=DEMO, file_name="c.wav")
    await upload.write(call_service_pb2.UploadRecordRequest(metadata=metadata))
    await upload.write(call_service_pb2.UploadRecordRequest(chunk=wav_bytes(1.0)))
    await upload.done_writing()
    await asyncio.wait_for(keeping.wait(), timeout=10)
    upload.cancel()

    await asyncio.wait_for(kept.wait(), timeout=10)
    # Core removes what was kept once the job in flight is done: give it time.
    for _ in range(200):
        if not (recording_files(core) or await stored_recordings(core)):
            break
        await asyncio.sleep(0.05)
    assert recording_files(core) == []
    assert await stored_recordings(core) == 0
