"""Core's metrics endpoint, per-RPC log lines and storage health, on an in-process core."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import types
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import core as core_package
from core import logs
from core.config import CoreConfig
from core.metrics import CoreMetrics
from core.server import Core
from telephony.v1 import call_pb2, call_service_pb2, call_service_pb2_grpc
from tests.conftest import running_core
from tests.ops.ops_support import Samples, database_file_gone, scrape, value, wav_bytes

CALLS = "telephony.v1.CallService"
DEMO = call_service_pb2.ChannelRef(channel_key="demo-channel-key")


def service(request_id: str = "ops-test") -> tuple[tuple[str, str], ...]:
    return (("authorization", "Bearer demo-service"), ("x-request-id", request_id))


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    async with running_core(
        tmp_path, metrics_addr="127.0.0.1:0", storage_check_seconds=0.05
    ) as server:
        yield server


@pytest.fixture
async def calls(core: Core) -> AsyncIterator[call_service_pb2_grpc.CallServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{core.port}") as channel:
        yield call_service_pb2_grpc.CallServiceStub(channel)


@pytest.fixture
def rpc_log() -> Iterator[io.StringIO]:
    """The per-RPC log lines, formatted as core formats them."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("vats.core.rpc")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


async def metrics(core: Core) -> Samples:
    assert core.metrics_server is not None
    url = f"http://127.0.0.1:{core.metrics_server.port}/metrics"
    return await asyncio.to_thread(scrape, url)


async def metrics_once_streams_ended(core: Core) -> Samples:
    """Core's metrics once it counts no card stream open (its streams were ended)."""
    for _ in range(50):
        samples = await metrics(core)
        if value(samples, "vats_core_stream_subscribers") == 0:
            break
        await asyncio.sleep(0.05)
    assert value(samples, "vats_core_stream_subscribers") == 0
    return samples


async def create_call(calls: call_service_pb2_grpc.CallServiceStub, **fields: Any) -> call_pb2.Call:
    request = call_service_pb2.CreateCallRequest(
        channel=DEMO, direction=call_pb2.DIRECTION_INCOMING, phone="+74951230000", **fields
    )
    reply = await calls.CreateCall(request, metadata=service(), timeout=5)
    return reply.call


def test_metrics_address_comes_from_the_environment_and_can_be_turned_off() -> None:
    assert CoreConfig.from_env({}).metrics_addr == "127.0.0.1:9464"
    assert CoreConfig.from_env({"VATS_METRICS_ADDR": "0.0.0.0:9100"}).metrics_addr == (
        "0.0.0.0:9100"
    )
    assert CoreConfig.from_env({"VATS_METRICS_ADDR": "off"}).metrics_addr is None
    assert CoreConfig().metrics_addr is None


async def test_rpc_counters_and_latency_move_by_method_and_code(
    core: Core, calls: call_service_pb2_grpc.CallServiceStub
) -> None:
    before = await metrics(core)
    await create_call(calls)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await calls.GetCall(call_service_pb2.GetCallRequest(call_id=9999), metadata=service())
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError):
        await calls.GetCall(call_service_pb2.GetCallRequest(call_id=1))  # no token
    after = await metrics(core)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("vats_core_rpcs_total", service=CALLS, method="CreateCall", code="OK") == 1
    assert moved("vats_core_rpcs_total", service=CALLS, method="GetCall", code="NOT_FOUND") == 1
    assert (
        moved("vats_core_rpcs_total", service=CALLS, method="GetCall", code="UNAUTHENTICATED") == 1
    )
    assert moved("vats_core_rpc_duration_seconds_count", service=CALLS, method="GetCall") == 2
    assert moved("vats_core_rpc_duration_seconds_sum", service=CALLS, method="CreateCall") > 0


async def test_sqlite_commit_counters_count_transactions_and_the_units_in_them(
    core: Core, calls: call_service_pb2_grpc.CallServiceStub
) -> None:
    before = await metrics(core)
    # Concurrent requests may share a commit; each is one unit of work.
    await asyncio.gather(*(create_call(calls) for _ in range(20)))
    after = await metrics(core)

    def moved(name: str) -> float:
        return value(after, name) - value(before, name)

    units, commits = (
        moved("vats_core_sqlite_units_committed_total"),
        moved("vats_core_sqlite_commits_total"),
    )
    assert units == 20
    assert 1 <= commits <= units


async def test_call_gauges_follow_active_calls_and_shown_cards(
    core: Core, calls: call_service_pb2_grpc.CallServiceStub
) -> None:
    start = await metrics(core)
    assert value(start, "vats_core_active_calls") == 0
    ringing = await create_call(calls, user_ids=[1])
    await create_call(calls, state=call_pb2.Call.STATE_ANSWERED)
    during = await metrics(core)
    assert value(during, "vats_core_active_calls") == 1
    assert value(during, "vats_core_visible_cards") == 1
    await calls.UpdateCall(
        call_service_pb2.UpdateCallRequest(
            channel=DEMO, call_id=ringing.call_id, state=call_pb2.Call.STATE_MISSED
        ),
        metadata=service(),
    )
    after = await metrics(core)
    assert value(after, "vats_core_active_calls") == 0
    assert value(after, "vats_core_visible_cards") == 0
    assert (
        value(after, "vats_core_events_published_total")
        - value(start, "vats_core_events_published_total")
        == 3
    )


async def test_events_delivered_and_subscribers_count_card_streams(
    core: Core, calls: call_service_pb2_grpc.CallServiceStub
) -> None:
    before = await metrics(core)
    stream = calls.WatchCallCards(
        call_service_pb2.WatchCallCardsRequest(employee_id=1), metadata=service()
    )
    await stream.initial_metadata()
    assert value(await metrics(core), "vats_core_stream_subscribers") == 1
    await create_call(calls, user_ids=[1])
    event = await asyncio.wait_for(stream.read(), 5)
    assert event.type == call_service_pb2.CallCardEvent.TYPE_SHOW
    stream.cancel()
    after = await metrics_once_streams_ended(core)
    delivered = value(after, "vats_core_events_delivered_total", stream="cards") - value(
        before, "vats_core_events_delivered_total", stream="cards"
    )
    assert delivered == 1
    assert (
        value(
            after, "vats_core_rpcs_total", service=CALLS, method="WatchCallCards", code="CANCELLED"
        )
        == 1
    )


async def test_stored_recordings_are_counted_with_their_bytes(
    core: Core, calls: call_service_pb2_grpc.CallServiceStub
) -> None:
    data = wav_bytes()

    async def messages() -> AsyncIterator[call_service_pb2.UploadRecordRequest]:
        yield call_service_pb2.UploadRecordRequest(
            metadata=call_service_pb2.UploadRecordRequest.Metadata(channel=DEMO, file_name="a.wav")
        )
        yield call_service_pb2.UploadRecordRequest(chunk=data)

    before = await metrics(core)
    reply = await calls.UploadRecord(messages(), metadata=service(), timeout=5)
    after = await metrics(core)
    assert reply.recording.size_bytes == len(data)
    assert (
        value(after, "vats_core_recordings_stored_total")
        - value(before, "vats_core_recordings_stored_total")
        == 1
    )
    assert value(after, "vats_core_recording_bytes_stored_total") - value(
        before, "vats_core_recording_bytes_stored_total"
    ) == len(data)


async def test_each_rpc_is_logged_once_with_the_callers_request_id(
    core: Core, calls: call_service_pb2_grpc.CallServiceStub, rpc_log: io.StringIO
) -> None:
    await calls.CreateCall(
        call_service_pb2.CreateCallRequest(
            channel=DEMO, direction=call_pb2.DIRECTION_OUTGOING, phone="+74950000001"
        ),
        metadata=service("req-from-gateway-42"),
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await calls.GetCall(call_service_pb2.GetCallRequest(call_id=1))
    # A line is written once its reply is on its way: a refusal may reach the caller first.
    for _ in range(100):
        lines = [json.loads(line) for line in rpc_log.getvalue().splitlines()]
        if any(line["method"].endswith("/GetCall") for line in lines):
            break
        await asyncio.sleep(0.01)
    created = [line for line in lines if line["method"].endswith("/CreateCall")]
    assert len(created) == 1
    assert created[0]["request_id"] == "req-from-gateway-42"
    assert created[0]["code"] == "OK"
    assert created[0]["duration_ms"] >= 0
    refused = [line for line in lines if line["method"].endswith("/GetCall")]
    assert refused[0]["code"] == "UNAUTHENTICATED"
    assert refused[0]["request_id"]  # one is made up when the caller sends none
    assert "demo-service" not in rpc_log.getvalue()


async def test_call_service_is_not_serving_while_storage_fails(core: Core) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{core.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)

        async def status(name: str) -> int:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=2)
            return int(reply.status)

        async def becomes(name: str, wanted: int) -> bool:
            for _ in range(100):
                if await status(name) == wanted:
                    return True
                await asyncio.sleep(0.02)
            return False

        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        assert await status(CALLS) == serving
        with database_file_gone(core):
            assert await becomes(CALLS, not_serving)
            assert await status("") == serving  # the process itself is alive
            assert value(await metrics(core), "vats_core_storage_up") == 0
        assert await becomes(CALLS, serving)
        assert value(await metrics(core), "vats_core_storage_up") == 1


async def test_count_queries_agree_with_the_gauges_kept_from_events(
    core: Core, calls: call_service_pb2_grpc.CallServiceStub
) -> None:
    shown = await create_call(calls, user_ids=[1])
    await create_call(calls, user_ids=[2], state=call_pb2.Call.STATE_IN_PROGRESS)
    await create_call(calls, state=call_pb2.Call.STATE_BUSY)
    await calls.UpdateCall(
        call_service_pb2.UpdateCallRequest(
            channel=DEMO, call_id=shown.call_id, state=call_pb2.Call.STATE_IN_PROGRESS
        ),
        metadata=service(),
    )
    kept = await metrics(core)
    # What a core on a change stream computes instead, from the stored calls.
    counted = CoreMetrics()
    await core.runner.run(counted.refresh_state, core.store)
    for name in ("vats_core_active_calls", "vats_core_visible_cards"):
        assert counted.registry.get_sample_value(name) == value(kept, name) == 2, name


async def test_ended_card_streams_leave_no_cycles_of_cores_frames(
    core: Core, calls: call_service_pb2_grpc.CallServiceStub
) -> None:
    # A stream's objects go when it ends, by reference counting: left in a cycle (an
    # exception kept in a local of a frame its traceback holds) they would wait for a full
    # collection, which after thousands of streams closing takes a pause of 100-300 ms.
    core_dir = str(Path(core_package.__file__).parent)
    gc.collect()
    gc.disable()
    try:
        streams = []
        for _ in range(5):
            stream = calls.WatchCallCards(
                call_service_pb2.WatchCallCardsRequest(employee_id=1), metadata=service()
            )
            await stream.initial_metadata()
            streams.append(stream)
        await create_call(calls, user_ids=[1])
        for stream in streams:
            event = await asyncio.wait_for(stream.read(), 5)
            assert event.type == call_service_pb2.CallCardEvent.TYPE_SHOW
            stream.cancel()
        await metrics_once_streams_ended(core)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        cycles = [
            f"{o.f_code.co_name} ({o.f_code.co_filename})"
            for o in gc.garbage
            if isinstance(o, types.FrameType) and o.f_code.co_filename.startswith(core_dir)
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert cycles == []
