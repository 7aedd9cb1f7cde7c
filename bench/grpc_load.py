"""The gRPC load generator: a separate process that calls CallService with N concurrent callers.

    python -m bench.grpc_load calls --target HOST:PORT --concurrency 32 --duration 5

Prints one JSON object (the last line of stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from bench.stats import summarize
from telephony.v1 import call_pb2, call_service_pb2, call_service_pb2_grpc

Metadata = tuple[tuple[str, str], ...]


class Callers:
    """Stubs over a few channels, handed out round-robin to the callers."""

    def __init__(self, target: str, token: str, channels: int) -> None:
        self.channels = [grpc.aio.insecure_channel(target) for _ in range(max(1, channels))]
        self.stubs = [call_service_pb2_grpc.CallServiceStub(ch) for ch in self.channels]
        self.metadata: Metadata = (("authorization", f"Bearer {token}"),)

    def stub(self, worker: int) -> call_service_pb2_grpc.CallServiceStub:
        return self.stubs[worker % len(self.stubs)]

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


def create_request(channel_key: str, pbx_call_id: str) -> call_service_pb2.CreateCallRequest:
    return call_service_pb2.CreateCallRequest(
        channel=call_service_pb2.ChannelRef(channel_key=channel_key),
        direction=call_pb2.DIRECTION_OUTGOING,
        phone="777777777",
        state=call_pb2.Call.STATE_RINGING,
        pbx_call_id=pbx_call_id,
        comment="start",
    )


def update_request(channel_key: str, call_id: int) -> call_service_pb2.UpdateCallRequest:
    return call_service_pb2.UpdateCallRequest(
        channel=call_service_pb2.ChannelRef(channel_key=channel_key),
        call_id=call_id,
        state=call_pb2.Call.STATE_ANSWERED,
    )


async def run_phase(
    one: Callable[[int], Awaitable[None]], concurrency: int, duration: float
) -> dict[str, Any]:
    """Each of `concurrency` workers calls `one(worker)` back to back until `duration` passes."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def worker(index: int) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                await one(index)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return summarize(latencies, time.perf_counter() - began, errors)


async def calls(args: argparse.Namespace) -> dict[str, Any]:
    """A CreateCall phase (unique pbx_call_ids), then an UpdateCall-to-answered phase over the
    calls it made; when the updates outrun them, they go round again (answered again)."""
    callers = Callers(args.target, args.token, args.channels)
    numbers = itertools.count()
    created: list[int] = []

    async def create(worker: int) -> None:
        request = create_request(args.channel_key, f"{args.prefix}-{next(numbers)}")
        reply = await callers.stub(worker).CreateCall(request, metadata=callers.metadata)
        created.append(reply.call.call_id)

    position = itertools.count()

    async def update(worker: int) -> None:
        call_id = created[next(position) % len(created)]
        await callers.stub(worker).UpdateCall(
            update_request(args.channel_key, call_id), metadata=callers.metadata
        )

    try:
        warmed = 0
        if args.warmup > 0:
            warmed = (await run_phase(create, args.concurrency, args.warmup))["n"]
        first_measured = len(created)
        create_result = await run_phase(create, args.concurrency, args.duration)
        # Update the calls of the measured phase first, newest last.
        created[:] = created[first_measured:] + created[:first_measured]
        update_result = await run_phase(update, args.concurrency, args.duration)
        update_result["repeated"] = max(0, next(position) - len(created))
        return {"create": create_result, "update": update_result, "warmup_n": warmed}
    finally:
        await callers.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_load")
    parser.add_argument("mode", choices=("calls",))
    parser.add_argument("--target", required=True)
    parser.add_argument("--token", default="demo-service")
    parser.add_argument("--channel-key", default="demo-channel-key")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--prefix", default=f"g{time.time_ns()}")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(calls(args))))


if __name__ == "__main__":
    main()
