"""What the hardening tests share: live stacks, gRPC look-ups and HTTP error checks."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx

from telephony.v1 import (
    call_pb2,
    call_service_pb2,
    call_service_pb2_grpc,
    channel_service_pb2,
    channel_service_pb2_grpc,
    directory_service_pb2,
    directory_service_pb2_grpc,
)
from tests.conftest import LiveStack

ADMIN = "demo-admin"
SERVICE = "demo-service"


def auth(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@contextlib.contextmanager
def started(workdir: Path, extra_env: dict[str, str] | None = None) -> Iterator[LiveStack]:
    stack = LiveStack(workdir, extra_env)
    try:
        stack.start_core()
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()


class Core:
    """Blocking gRPC access to a live core, with the admin token unless told otherwise."""

    def __init__(self, stack: LiveStack) -> None:
        self.stack = stack
        self.channel = grpc.insecure_channel(stack.grpc_target)
        self.calls = call_service_pb2_grpc.CallServiceStub(self.channel)
        self.channels = channel_service_pb2_grpc.ChannelServiceStub(self.channel)
        self.directory = directory_service_pb2_grpc.DirectoryServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def list_calls(self, token: str = ADMIN, **filters: Any) -> list[call_pb2.Call]:
        calls: list[call_pb2.Call] = []
        page_token = ""
        while True:
            reply = self.calls.ListCalls(
                call_service_pb2.ListCallsRequest(page_size=500, page_token=page_token, **filters),
                metadata=auth(token),
                timeout=10,
            )
            calls.extend(reply.calls)
            page_token = reply.next_page_token
            if not page_token:
                return calls

    def count_calls(self) -> int:
        return len(self.list_calls())

    def get_call(self, call_id: int, token: str = ADMIN) -> call_pb2.Call:
        return self.calls.GetCall(
            call_service_pb2.GetCallRequest(call_id=call_id), metadata=auth(token), timeout=10
        ).call

    def create_channel(self, name: str) -> channel_service_pb2.CreateChannelResponse:
        return self.channels.CreateChannel(
            channel_service_pb2.CreateChannelRequest(name=name, department_id=1),
            metadata=auth(ADMIN),
            timeout=10,
        )

    def rotate_key(self, channel_id: int) -> channel_service_pb2.RotateChannelKeyResponse:
        return self.channels.RotateChannelKey(
            channel_service_pb2.RotateChannelKeyRequest(channel_id=channel_id),
            metadata=auth(ADMIN),
            timeout=10,
        )

    def set_enabled(self, channel_id: int, enabled: bool) -> None:
        self.channels.UpdateChannel(
            channel_service_pb2.UpdateChannelRequest(channel_id=channel_id, enabled=enabled),
            metadata=auth(ADMIN),
            timeout=10,
        )

    def issue_employee_token(self, employee_id: int) -> directory_service_pb2.IssueTokenResponse:
        return self.directory.IssueToken(
            directory_service_pb2.IssueTokenRequest(
                role=directory_service_pb2.ROLE_EMPLOYEE, employee_id=employee_id
            ),
            metadata=auth(ADMIN),
            timeout=10,
        )

    def revoke_token(self, token_id: str) -> None:
        self.directory.RevokeToken(
            directory_service_pb2.RevokeTokenRequest(token_id=token_id),
            metadata=auth(ADMIN),
            timeout=10,
        )


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error object of a JSON error reply (fails the test on any other shape)."""
    assert response.headers.get("content-type", "").startswith("application/json"), (
        response.status_code,
        response.headers,
        response.text[:300],
    )
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error.get("code"), str) and re.fullmatch(r"[a-z_]+", error["code"]), error
    assert isinstance(error.get("message"), str) and error["message"], error
    return dict(error)


def call_body(**fields: Any) -> dict[str, Any]:
    return {"action": "create_call", "direction": "incoming", "phone": "+74951234567", **fields}
