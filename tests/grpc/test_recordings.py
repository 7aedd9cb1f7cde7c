"""UploadRecord and DownloadRecord against a real grpc.aio server."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

from core.server import Core
from telephony.v1 import call_pb2, call_service_pb2, call_service_pb2_grpc
from tests.conftest import bearer
from tests.recordings.recording_samples import pcm_wav

FIXTURES = Path(__file__).resolve().parent.parent / "recordings" / "fixtures"
DEMO = call_service_pb2.ChannelRef(channel_key="demo-channel-key")
SERVICE = bearer("demo-service")
CHUNK = 64 * 1024


async def stored_recordings(core: Core) -> int:
    """How many recordings the store keeps, attached or not."""

    def count() -> int:
        with core.store.reading() as uow:
            return sum(1 for _ in uow.recordings.ids())

    return await core.runner.run(count)


def wav_bytes(seconds: float = 1.0, rate: int = 8000) -> bytes:
    return pcm_wav(seconds, rate)


@pytest.fixture
def calls(channel: grpc.aio.Channel) -> call_service_pb2_grpc.CallServiceStub:
    return call_service_pb2_grpc.CallServiceStub(channel)


async def messages(
    data: bytes, name: str = "call.wav"
) -> AsyncIterator[call_service_pb2.UploadRecordRequest]:
    yield call_service_pb2.UploadRecordRequest(
        metadata=call_service_pb2.UploadRecordRequest.Metadata(channel=DEMO, file_name=name)
    )
    for start in range(0, len(data), CHUNK):
        yield call_service_pb2.UploadRecordRequest(chunk=data[start : start + CHUNK])


async def upload(calls: call_service_pb2_grpc.CallServiceStub, data: bytes) -> call_pb2.Recording:
    reply = await calls.UploadRecord(messages(data), metadata=SERVICE, timeout=10)
    return reply.recording


async def download(
    calls: call_service_pb2_grpc.CallServiceStub,
    recording_id: str,
    metadata: list[tuple[str, str]] = SERVICE,
    **fields: Any,
) -> tuple[call_pb2.Recording, bytes]:
    stream = calls.DownloadRecord(
        call_service_pb2.DownloadRecordRequest(recording_id=recording_id, **fields),
        metadata=metadata,
    )
    messages_read = [m async for m in stream]
    return messages_read[0].recording, b"".join(m.chunk for m in messages_read[1:])


async def create_with(
    calls: call_service_pb2_grpc.CallServiceStub,
    recording_id: str,
    user_ids: Sequence[int] = (),
    group_ids: Sequence[int] = (),
) -> call_pb2.Call:
    reply = await calls.CreateCall(
        call_service_pb2.CreateCallRequest(
            channel=DEMO,
            direction=call_pb2.DIRECTION_INCOMING,
            phone="+74951234567",
            recording_id=recording_id,
            user_ids=user_ids,
            group_ids=group_ids,
        ),
        metadata=SERVICE,
    )
    return reply.call


async def test_uploaded_recording_is_attached_and_downloads_identically(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    data = wav_bytes(2.0)
    recording = await upload(calls, data)
    assert recording.format == call_pb2.Recording.FORMAT_WAV
    assert recording.size_bytes == len(data)
    assert recording.sha256 == hashlib.sha256(data).hexdigest()
    assert abs(recording.duration.ToTimedelta().total_seconds() - 2.0) < 0.01
    call = await create_with(calls, recording.recording_id, user_ids=[1])
    assert call.recording.recording_id == recording.recording_id
    assert call.recording.signed_path.startswith(
        f"/api/v2/telephony/records/{recording.recording_id}?"
    )
    meta, body = await download(calls, recording.recording_id)
    assert body == data and meta.content_type == "audio/wav"


async def test_range_download_returns_the_exact_slice(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    data = wav_bytes(3.0)
    recording = await upload(calls, data)
    await create_with(calls, recording.recording_id)
    _, body = await download(calls, recording.recording_id, offset=1000, length=70_000)
    assert body == data[1000:71_000]
    _, tail = await download(calls, recording.recording_id, offset=len(data) - 10)
    assert tail == data[-10:]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await download(calls, recording.recording_id, offset=len(data))
    assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE


async def test_later_recording_becomes_current_and_earlier_stay_listed(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    first = await upload(calls, wav_bytes(1.0))
    call = await create_with(calls, first.recording_id)
    second = await upload(calls, (FIXTURES / "tone-cbr.mp3").read_bytes())
    reply = await calls.UpdateCall(
        call_service_pb2.UpdateCallRequest(
            channel=DEMO,
            call_id=call.call_id,
            state=call_pb2.Call.STATE_ANSWERED,
            recording_id=second.recording_id,
        ),
        metadata=SERVICE,
    )
    assert reply.call.recording.recording_id == second.recording_id
    assert reply.call.recording.format == call_pb2.Recording.FORMAT_MP3
    assert [r.recording_id for r in reply.call.recordings] == [
        first.recording_id,
        second.recording_id,
    ]


@pytest.mark.parametrize(
    "data", [b"not audio at all, just text" * 100, b"\x89PNG\r\n\x1a\n" + b"\x00" * 5000]
)
async def test_unrecognised_content_is_refused_and_nothing_is_stored(
    calls: call_service_pb2_grpc.CallServiceStub, core: Core, data: bytes
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await upload(calls, data)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await stored_recordings(core) == 0
    assert not list((Path(core.config.data_dir) / "recordings").rglob("*.*"))


async def test_empty_upload_is_refused(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await upload(calls, b"")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_oversize_upload_is_refused(
    calls: call_service_pb2_grpc.CallServiceStub, core: Core
) -> None:
    core.library.max_bytes = 100_000
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await upload(calls, wav_bytes(10.0))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await stored_recordings(core) == 0


async def test_recording_of_a_failed_request_is_removed(
    calls: call_service_pb2_grpc.CallServiceStub, core: Core
) -> None:
    recording = await upload(calls, wav_bytes())
    with pytest.raises(grpc.aio.AioRpcError):
        await create_with(calls, recording.recording_id, user_ids=[1], group_ids=[10])
    assert await stored_recordings(core) == 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await download(calls, recording.recording_id)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_unattached_recordings_are_swept(
    calls: call_service_pb2_grpc.CallServiceStub, core: Core
) -> None:
    from datetime import timedelta

    from core.model import utc_now

    await upload(calls, wav_bytes())
    assert await core.runner.run(core.library.sweep_unattached) == 0
    later = utc_now() + timedelta(hours=1)
    assert await core.runner.run(core.library.sweep_unattached, later) == 1
    assert await stored_recordings(core) == 0


async def test_signed_link_is_checked(
    calls: call_service_pb2_grpc.CallServiceStub, core: Core
) -> None:
    recording = await upload(calls, wav_bytes())
    await create_with(calls, recording.recording_id)
    expires, signature = core.signer.sign(recording.recording_id, time.time())
    _, body = await download(calls, recording.recording_id, expires=expires, signature=signature)
    assert body
    for bad_expires, bad_signature in [
        (expires, signature[:-2] + "AA"),
        (expires + 1, signature),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await download(
                calls, recording.recording_id, expires=bad_expires, signature=bad_signature
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    old_expires, old_signature = core.signer.sign(recording.recording_id, time.time() - 10**6)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await download(calls, recording.recording_id, expires=old_expires, signature=old_signature)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_employee_downloads_only_recordings_of_their_calls(
    calls: call_service_pb2_grpc.CallServiceStub,
) -> None:
    mine = await upload(calls, wav_bytes())
    await create_with(calls, mine.recording_id, user_ids=[1])
    theirs = await upload(calls, wav_bytes())
    await create_with(calls, theirs.recording_id, user_ids=[2])
    _, body = await download(calls, mine.recording_id, metadata=bearer("demo-anna"))
    assert body
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await download(calls, theirs.recording_id, metadata=bearer("demo-anna"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_unknown_recording_is_not_found(calls: call_service_pb2_grpc.CallServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await download(calls, "0123456789abcdef")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_recording_of_another_channel_cannot_be_attached(
    calls: call_service_pb2_grpc.CallServiceStub, channel: grpc.aio.Channel
) -> None:
    from telephony.v1 import channel_service_pb2, channel_service_pb2_grpc

    other = await channel_service_pb2_grpc.ChannelServiceStub(channel).CreateChannel(
        channel_service_pb2.CreateChannelRequest(name="Other"), metadata=bearer("demo-admin")
    )
    recording = await upload(calls, wav_bytes())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.CreateCall(
            call_service_pb2.CreateCallRequest(
                channel=call_service_pb2.ChannelRef(channel_key=other.key),
                direction=call_pb2.DIRECTION_INCOMING,
                phone="1",
                recording_id=recording.recording_id,
            ),
            metadata=SERVICE,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
