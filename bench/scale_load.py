"""Cost per request at the current store size: one caller, back to back.

    python -m bench.scale_load --calls-url URL --history-url URL --grpc TARGET --seconds 2

Times create_call + update_call (answered) pairs through the gateway (multipart, as the PBX
sends them), then the first page (50, newest first) of the call history, unfiltered and
filtered by the rare caller's phone, employee and status (bench.seed): over gRPC
(ListCalls, straight to core) and over HTTP (GET /api/v2/telephony/history, through the
gateway). Each measurement follows a short warm-up. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import grpc.aio

from bench.rawhttp import CONTENT_TYPE, Connection, host_port, multipart
from bench.seed import RARE_EMPLOYEE, RARE_PHONE, RARE_STATUS
from bench.stats import summarize
from telephony.v1 import call_pb2, call_service_pb2, call_service_pb2_grpc

MIN_SAMPLES = 3
WARMUP = 5
STATES = {"failed": call_pb2.Call.STATE_FAILED}
# The history's filters as the helpdesk gives them (HTTP query) and as ListCalls takes them.
FILTERS: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
    "all": ({}, {}),
    "phone": ({"phone": RARE_PHONE}, {"phone": RARE_PHONE}),
    "employee": ({"employee": str(RARE_EMPLOYEE)}, {"employee_id": RARE_EMPLOYEE}),
    "status": ({"status": RARE_STATUS}, {"states": [STATES[RARE_STATUS]]}),
}


async def timed(one: Callable[[], Awaitable[int]], seconds: float) -> dict[str, Any]:
    """`one()` back to back for `seconds` after WARMUP untimed runs; it returns how many
    calls the page held (0 for a pair), -1 for an error."""
    for _ in range(WARMUP):
        await one()
    latencies: list[float] = []
    errors = 0
    items = 0
    began = time.perf_counter()
    deadline = began + seconds
    while time.perf_counter() < deadline or len(latencies) < MIN_SAMPLES:
        start = time.perf_counter()
        got = await one()
        if got < 0:
            errors += 1
            if errors > 10:
                break
            continue
        latencies.append(time.perf_counter() - start)
        items = got
    return summarize(latencies, time.perf_counter() - began, errors) | {"items": items}


async def pairs(calls_url: str, seconds: float, prefix: str) -> dict[str, Any]:
    host, port, path = host_port(calls_url)
    connection = await Connection.open(host, port)
    headers = {"Content-Type": CONTENT_TYPE}
    numbers = iter(range(1 << 62))

    async def one() -> int:
        pbx_call_id = f"{prefix}-{next(numbers)}"
        create = multipart(
            [
                ("action", "create_call"),
                ("direction", "outgoing"),
                ("phone", "777777777"),
                ("call_status", "ringing"),
                ("comment", "start"),
                ("pbx_call_id", pbx_call_id),
            ]
        )
        update = multipart(
            [("action", "update_call"), ("pbx_call_id", pbx_call_id), ("call_status", "answered")]
        )
        first, _ = await connection.request("POST", path, create, headers)
        second, _ = await connection.request("POST", path, update, headers)
        return 0 if first == second == 200 else -1

    try:
        result = await timed(one, seconds)
    finally:
        await connection.close()
    # Every pair stored one call, the warm-up's too.
    result["stored"] = next(numbers)
    return result


async def history(history_url: str, token: str, query: dict[str, str], seconds: float) -> Any:
    host, port, path = host_port(history_url)
    connection = await Connection.open(host, port)
    target = path + ("?" + urlencode(query) if query else "")
    headers = {"Authorization": f"Bearer {token}"}

    async def one() -> int:
        status, body = await connection.request("GET", target, b"", headers)
        return len(json.loads(body)["data"]) if status == 200 else -1

    try:
        return await timed(one, seconds)
    finally:
        await connection.close()


async def list_calls(
    stub: call_service_pb2_grpc.CallServiceStub, token: str, fields: dict[str, Any], seconds: float
) -> dict[str, Any]:
    metadata = (("authorization", f"Bearer {token}"),)
    request = call_service_pb2.ListCallsRequest(page_size=50, **fields)

    async def one() -> int:
        reply = await stub.ListCalls(request, metadata=metadata)
        return len(reply.calls)

    return await timed(one, seconds)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"pair": await pairs(args.calls_url, args.seconds, args.prefix)}
    async with grpc.aio.insecure_channel(args.grpc) as channel:
        stub = call_service_pb2_grpc.CallServiceStub(channel)
        for name, (_, fields) in FILTERS.items():
            result[f"list_{name}"] = await list_calls(stub, args.token, fields, args.seconds)
    for name, (query, _) in FILTERS.items():
        result[f"history_{name}"] = await history(args.history_url, args.token, query, args.seconds)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_load")
    parser.add_argument("--calls-url", required=True)
    parser.add_argument("--history-url", required=True)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--token", default="demo-service")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--prefix", default=f"s{time.time_ns()}")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
