"""The five scenarios, in the order they run; each returns a report Section."""

from __future__ import annotations

from collections.abc import Callable

from bench.context import Context, Section
from bench.scenarios import cards, grpc_calls, pbx, scale, upload

Scenario = Callable[[Context], Section]

SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "pbx": ("PBX endpoint over HTTP (create_call, update_call)", pbx.run),
    "grpc": ("CreateCall / UpdateCall over gRPC", grpc_calls.run),
    "cards": ("Card delivery latency", cards.run),
    "upload": ("Recording upload, 200 MB", upload.run),
    "scale": ("Cost per request against stored calls", scale.run),
}
