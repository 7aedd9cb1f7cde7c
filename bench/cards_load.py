"""Card delivery latency: subscribers and the poster in one load process, on one clock.

    python -m bench.cards_load --transport grpc|sse --http URL --grpc TARGET --levels 10,100,1000

For each level N: N subscribers connect (gRPC WatchCallCards streams over a few channels,
or SSE connections to the gateway with employee tokens), then the poster sends create_call
(ringing, audience: a group of exactly those N employees) and, once every subscriber has
its card, update_call to answered, WARMUP_ROUNDS times untimed and then the timed rounds;
each timed card event is timed from just before the POST is written to when each subscriber
reads it, with this process's garbage collector paused (its pauses are not the servers').
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import grpc.aio

from bench.rawhttp import CONTENT_TYPE, Connection, host_port, multipart
from bench.stats import summarize
from telephony.v1 import call_service_pb2, call_service_pb2_grpc

# Employees of the bench seed (bench/seed.py): ids from FIRST_EMPLOYEE, token "bench-emp-<id>",
# group GROUP_BASE + N holds the first N of them.
FIRST_EMPLOYEE = 1001
GROUP_BASE = 90000
CONNECT_BATCH = 50
# How long the poster waits for every subscriber to have an event (longer for more of them).
WAIT_SECONDS = 5.0
WAIT_SECONDS_PER_THOUSAND = 2.0
# Untimed rounds at each level before the timed ones, on the full path and the ceiling
# alike: what the first cards of a level pay once (code paths run for the first time,
# lazily loaded data, the first write to each new stream) is not the fan-out's steady cost.
WARMUP_ROUNDS = 2
# Card events timed per level, at most (half shows, half hides), and deliveries per level,
# about: a level times min(EVENTS, DELIVERIES / subscribers) events (6 at least). With 40
# events, the p99 of 10 or 100 subscribers was the latency of the single slowest event, and
# moved 2-4x between runs; with 200 it is that of the slowest two.
EVENTS = 200
DELIVERIES = 20_000

# (pbx_call_id, event name) -> arrival times (monotonic ns)
OnEvent = Callable[[str, str, int], None]


def token_of(employee_id: int) -> str:
    return f"bench-emp-{employee_id}"


class Deliveries:
    """Arrival times per posted event, and a way to wait until all N have arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.wait_seconds = WAIT_SECONDS + WAIT_SECONDS_PER_THOUSAND * expected / 1000
        self.arrivals: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.waiters: dict[tuple[str, str], asyncio.Event] = {}

    def record(self, pbx_call_id: str, kind: str, at_ns: int) -> None:
        key = (pbx_call_id, kind)
        times = self.arrivals[key]
        times.append(at_ns)
        waiter = self.waiters.get(key)
        if waiter is not None and len(times) >= self.expected:
            waiter.set()

    async def wait(self, pbx_call_id: str, kind: str) -> None:
        key = (pbx_call_id, kind)
        if len(self.arrivals[key]) >= self.expected:
            return
        waiter = self.waiters.setdefault(key, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), self.wait_seconds)


# --- subscribers ---------------------------------------------------------------------------------

_GRPC_KINDS = {
    call_service_pb2.CallCardEvent.TYPE_SHOW: "show",
    call_service_pb2.CallCardEvent.TYPE_UPDATE: "update",
    call_service_pb2.CallCardEvent.TYPE_HIDE: "hide",
    call_service_pb2.CallCardEvent.TYPE_RESET: "reset",
}


async def grpc_subscribers(
    target: str, token: str, employees: list[int], on_event: OnEvent
) -> tuple[list[asyncio.Task[None]], list[grpc.aio.Channel]]:
    channels = [grpc.aio.insecure_channel(target) for _ in range(max(1, len(employees) // 100))]
    stubs = [call_service_pb2_grpc.CallServiceStub(ch) for ch in channels]
    metadata = (("authorization", f"Bearer {token}"),)
    streams = [
        stubs[i % len(stubs)].WatchCallCards(
            call_service_pb2.WatchCallCardsRequest(employee_id=e), metadata=metadata
        )
        for i, e in enumerate(employees)
    ]
    await asyncio.gather(*(s.initial_metadata() for s in streams))

    async def read(stream: Any) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            async for event in stream:
                at = time.monotonic_ns()
                on_event(event.card.pbx_call_id, _GRPC_KINDS.get(event.type, "?"), at)

    return [asyncio.create_task(read(s)) for s in streams], channels


async def sse_subscriber(
    url: str, token: str, on_event: OnEvent, ready: asyncio.Queue[int]
) -> None:
    host, port, path = host_port(url)
    connection = await Connection.open(host, port)
    try:
        connection.send_head(
            "GET", path, {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        )
        status, _ = await connection.read_head()
        await ready.put(status)
        if status != 200:
            return
        kind = ""
        while line := await connection.reader.readline():
            if line.startswith(b"data:"):
                at = time.monotonic_ns()
                data = json.loads(line[5:])
                on_event(str(data.get("pbx_call_id") or ""), kind, at)
            elif line.startswith(b"event:"):
                kind = line[6:].strip().decode()
    finally:
        await connection.close()


async def sse_subscribers(
    url: str, employees: list[int], on_event: OnEvent
) -> list[asyncio.Task[None]]:
    ready: asyncio.Queue[int] = asyncio.Queue()
    tasks: list[asyncio.Task[None]] = []
    for start in range(0, len(employees), CONNECT_BATCH):
        batch = employees[start : start + CONNECT_BATCH]
        for e in batch:
            tasks.append(asyncio.create_task(sse_subscriber(url, token_of(e), on_event, ready)))
        for _ in batch:
            status = await asyncio.wait_for(ready.get(), 60)
            if status != 200:
                raise RuntimeError(f"card stream refused: HTTP {status}")
    return tasks


# --- poster --------------------------------------------------------------------------------------


async def post_rounds(
    calls_url: str, group_id: int, rounds: int, deliveries: Deliveries, prefix: str
) -> tuple[list[float], list[tuple[int, list[int]]]]:
    """create (show) then update (hide) per round; returns POST times and (sent, arrivals)."""
    host, port, path = host_port(calls_url)
    connection = await Connection.open(host, port)
    headers = {"Content-Type": CONTENT_TYPE}
    post_seconds: list[float] = []
    samples: list[tuple[int, list[int]]] = []
    try:
        for i in range(rounds):
            pbx_call_id = f"{prefix}-{i}"
            steps = (
                (
                    "show",
                    [
                        ("action", "create_call"),
                        ("direction", "incoming"),
                        ("phone", "777777777"),
                        ("call_status", "ringing"),
                        ("pbx_call_id", pbx_call_id),
                        ("group_ids[]", str(group_id)),
                    ],
                ),
                (
                    "hide",
                    [
                        ("action", "update_call"),
                        ("pbx_call_id", pbx_call_id),
                        ("call_status", "answered"),
                    ],
                ),
            )
            for kind, fields in steps:
                body = multipart(fields)
                if connection.reader.at_eof():
                    # The server closed the idle connection (its keep-alive timeout).
                    await connection.close()
                    connection = await Connection.open(host, port)
                sent = time.monotonic_ns()
                status, reply = await connection.request("POST", path, body, headers)
                post_seconds.append((time.monotonic_ns() - sent) / 1e9)
                if status != 200:
                    raise RuntimeError(f"POST failed: HTTP {status} {reply[:300]!r}")
                await deliveries.wait(pbx_call_id, kind)
                samples.append((sent, deliveries.arrivals[(pbx_call_id, kind)]))
    finally:
        await connection.close()
    return post_seconds, samples


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """This process's garbage collector stays out of the timed rounds: its pauses would be
    counted as the servers' delivery latency (measured: up to 115 ms with 1,000 streams open
    here), on the full path or the ceiling, whichever they fell in."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def one_level(args: argparse.Namespace, n: int) -> dict[str, Any]:
    employees = list(range(FIRST_EMPLOYEE, FIRST_EMPLOYEE + n))
    deliveries = Deliveries(n)
    channels: list[grpc.aio.Channel] = []
    began = time.monotonic()
    if args.transport == "grpc":
        tasks, channels = await grpc_subscribers(
            args.grpc, args.token, employees, deliveries.record
        )
    else:
        tasks = await sse_subscribers(args.http + args.stream_path, employees, deliveries.record)
    connect_seconds = time.monotonic() - began
    # Let snapshots and connection bursts settle before timing anything.
    await asyncio.sleep(0.3)
    rounds = max(3, min(args.events // 2, args.samples // (2 * n)))
    prefix = f"{args.prefix}-{args.transport}-{n}"
    try:
        await post_rounds(
            args.http + args.calls_path, GROUP_BASE + n, WARMUP_ROUNDS, deliveries, prefix + "-w"
        )
        with collector_paused():
            post_seconds, samples = await post_rounds(
                args.http + args.calls_path,
                GROUP_BASE + n,
                rounds,
                deliveries,
                prefix,
            )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()
    latencies = [(at - sent) / 1e9 for sent, arrivals in samples for at in arrivals[:n]]
    missing = sum(max(0, n - len(arrivals)) for _, arrivals in samples)
    # The first subscriber's card tells the time to publish; the rest is the fan-out.
    firsts = summarize(
        [(min(arrivals) - sent) / 1e9 for sent, arrivals in samples if arrivals], 1.0
    )
    result = summarize(latencies, 1.0)
    result.pop("rps")
    post = summarize(post_seconds, 1.0)
    return {
        "subscribers": n,
        "events": len(samples),
        "deliveries": len(latencies),
        "missing": missing,
        "connect_seconds": round(connect_seconds, 2),
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "max_ms": result["max_ms"],
        "post_p50_ms": post["p50_ms"],
        "first_p50_ms": firsts["p50_ms"],
        "first_p99_ms": firsts["p99_ms"],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    levels = []
    for n in (int(x) for x in args.levels.split(",")):
        levels.append(await one_level(args, n))
    return {"transport": args.transport, "levels": levels}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cards_load")
    parser.add_argument("--transport", choices=("grpc", "sse"), required=True)
    parser.add_argument("--http", required=True, help="base URL of the gateway (or relay app)")
    parser.add_argument("--grpc", default="", help="core (or echo) target for gRPC subscribers")
    parser.add_argument("--token", default="demo-service")
    parser.add_argument("--levels", default="10,100,1000")
    parser.add_argument("--events", type=int, default=EVENTS, help="card events per level, at most")
    parser.add_argument(
        "--samples", type=int, default=DELIVERIES, help="deliveries per level, about"
    )
    parser.add_argument("--calls-path", default="/api/v2/telephony/calls/demo-channel-key")
    parser.add_argument("--stream-path", default="/api/v2/telephony/cards/stream")
    parser.add_argument("--prefix", default=f"c{time.time_ns()}")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
