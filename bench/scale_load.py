"""Cost per request at the current store size: one caller, back to back.

    python -m bench.scale_load --calls-url URL --grpc TARGET --seconds 2

Times create_call + update_call (answered) pairs through the gateway (multipart, as the PBX
sends them) and ListCalls (first page of 50, newest first) over gRPC. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import grpc.aio

from bench.rawhttp import CONTENT_TYPE, Connection, host_port, multipart
from bench.stats import summarize
from telephony.v1 import call_service_pb2, call_service_pb2_grpc

MIN_SAMPLES = 3


async def pairs(calls_url: str, seconds: float, prefix: str) -> dict[str, Any]:
    host, port, path = host_port(calls_url)
    connection = await Connection.open(host, port)
    headers = {"Content-Type": CONTENT_TYPE}
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    began = time.perf_counter()
    try:
        while time.perf_counter() < deadline or len(latencies) < MIN_SAMPLES:
            pbx_call_id = f"{prefix}-{len(latencies) + errors}"
            start = time.perf_counter()
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
                [
                    ("action", "update_call"),
                    ("pbx_call_id", pbx_call_id),
                    ("call_status", "answered"),
                ]
            )
            first, _ = await connection.request("POST", path, create, headers)
            second, _ = await connection.request("POST", path, update, headers)
            if first == second == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1
                if errors > 10:
                    break
    finally:
        await connection.close()
    return summarize(latencies, time.perf_counter() - began, errors)


async def list_calls(target: str, token: str, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = call_service_pb2_grpc.CallServiceStub(channel)
        deadline = time.perf_counter() + seconds
        began = time.perf_counter()
        while time.perf_counter() < deadline or len(latencies) < MIN_SAMPLES:
            start = time.perf_counter()
            await stub.ListCalls(call_service_pb2.ListCallsRequest(page_size=50), metadata=metadata)
            latencies.append(time.perf_counter() - start)
    return summarize(latencies, time.perf_counter() - began)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "pair": await pairs(args.calls_url, args.seconds, args.prefix),
        "list": await list_calls(args.grpc, args.token, args.seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_load")
    parser.add_argument("--calls-url", required=True)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--token", default="demo-service")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--prefix", default=f"s{time.time_ns()}")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
