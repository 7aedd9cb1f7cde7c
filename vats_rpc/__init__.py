"""Both ends of a client's channel to core: what a request carries (the bearer token and the
request id) and what a refusal says (the google.rpc details core attaches to a status).

Shared by the gateway and the admin CLI, which share no other code (as `vats_logs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

Metadata = tuple[tuple[str, str], ...]

AUTHORIZATION = "authorization"
REQUEST_ID = "x-request-id"


def bearer(token: str) -> str:
    return f"Bearer {token}"


def is_metadata_safe(value: str) -> bool:
    """gRPC refuses metadata values outside printable ASCII; such tokens are no tokens."""
    return value.isascii() and value.isprintable()


def metadata(authorization: str | None, request_id: str | None = None) -> Metadata:
    """A request's metadata: its `Authorization` value and its id, each when it has one."""
    auth = ((AUTHORIZATION, authorization),) if authorization else ()
    ids = ((REQUEST_ID, request_id),) if request_id else ()
    return (*auth, *ids)


def token_metadata(token: str | None, request_id: str | None = None) -> Metadata:
    """The metadata of a request made with `token` (none: made without one)."""
    return metadata(bearer(token) if token else None, request_id)


@dataclass(frozen=True)
class RpcStatus:
    """What core said of a failed request: code, message and the rich details it attached
    (ErrorInfo's reason, BadRequest's field violations in order, RetryInfo's delay)."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    violations: tuple[tuple[str, str], ...] = ()
    retry_after: float | None = None

    @classmethod
    def of(cls, error: grpc.RpcError) -> RpcStatus:
        code = error.code() if callable(getattr(error, "code", None)) else None
        details = error.details() if callable(getattr(error, "details", None)) else None
        try:
            status = rpc_status.from_call(error)
        except (ValueError, TypeError, AttributeError):
            status = None
        return cls(
            code=code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN,
            message=details or "",
            **_rich_details(status),
        )

    @classmethod
    def of_status(cls, status: status_pb2.Status) -> RpcStatus:
        """What a google.rpc.Status says (as core reports a command of a batch it refused)."""
        try:
            code = grpc.StatusCode[code_pb2.Code.Name(status.code)]
        except (KeyError, ValueError):
            code = grpc.StatusCode.UNKNOWN
        return cls(code=code, message=status.message, **_rich_details(status))


def _rich_details(status: status_pb2.Status | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    violations: list[tuple[str, str]] = []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            found["reason"] = _unpack(detail, error_details_pb2.ErrorInfo()).reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = _unpack(detail, error_details_pb2.BadRequest())
            violations.extend((v.field, v.description) for v in bad_request.field_violations)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            delay = _unpack(detail, error_details_pb2.RetryInfo()).retry_delay
            found["retry_after"] = delay.ToTimedelta().total_seconds()
    return {**found, "violations": tuple(violations)}


def _unpack(detail: Any, message: Any) -> Any:
    detail.Unpack(message)
    return message
