"""One create_call at a time, nothing else going on: what a single PBX request costs.

    python -m bench.rest_load --url URL --count 200

Multipart create_call (a new pbx_call_id each) back to back over one keep-alive
connection, after a few untimed ones; each timed from just before the request is written
to the end of the reply. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from bench.rawhttp import CONTENT_TYPE, Connection, host_port, multipart
from bench.stats import summarize

WARMUP = 20


async def run(url: str, count: int, prefix: str) -> dict[str, Any]:
    host, port, path = host_port(url)
    connection = await Connection.open(host, port)
    headers = {"Content-Type": CONTENT_TYPE}
    latencies: list[float] = []
    errors = 0
    try:
        for i in range(WARMUP + count):
            body = multipart(
                [
                    ("action", "create_call"),
                    ("direction", "outgoing"),
                    ("phone", "777777777"),
                    ("call_status", "ringing"),
                    ("pbx_call_id", f"{prefix}-{i}"),
                ]
            )
            began = time.perf_counter()
            status, _ = await connection.request("POST", path, body, headers)
            if i >= WARMUP:
                if status == 200:
                    latencies.append(time.perf_counter() - began)
                else:
                    errors += 1
    finally:
        await connection.close()
    result = summarize(latencies, sum(latencies), errors)
    result.pop("rps")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rest_load")
    parser.add_argument("--url", required=True, help="the create_call URL (channel key in it)")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--prefix", default=f"r{time.time_ns()}")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.count, args.prefix))))


if __name__ == "__main__":
    main()
