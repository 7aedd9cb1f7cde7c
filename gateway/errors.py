"""HTTP errors of the gateway: the one gRPC-to-HTTP table and the JSON error body."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import falcon
import falcon.asgi
import grpc
from google.rpc import status_pb2

from vats_rpc import RpcStatus

log = logging.getLogger("gateway")


class GatewayError(falcon.HTTPError):
    """An error answered as {"error": {"code", "message", "fields"?}}."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        fields: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, title=message, headers=dict(headers or {}))
        self.reason = reason
        self.message = message
        self.fields = dict(fields or {})


def invalid_fields(fields: Mapping[str, str]) -> GatewayError:
    names = ", ".join(sorted(fields))
    return GatewayError(422, "invalid_request", f"invalid fields: {names}", fields)


def unavailable(retry_after: int = 1) -> GatewayError:
    return GatewayError(
        503,
        "unavailable",
        "the service is temporarily unavailable, retry later",
        headers={"Retry-After": str(retry_after)},
    )


@dataclass(frozen=True)
class HttpError:
    status: int
    reason: str
    # Client errors carry core's message; our own trouble gets a generic one.
    client_fault: bool = True
    retry: bool = False


_UNAVAILABLE = HttpError(503, "unavailable", client_fault=False, retry=True)
_CORE_ERROR = HttpError(502, "core_error", client_fault=False)

# The one gRPC -> HTTP table. ErrorInfo.reason decides; the bare status code
# decides when core (or the gRPC runtime itself) gave no reason.
BY_REASON: dict[str, HttpError] = {
    "invalid_request": HttpError(422, "invalid_request"),
    "not_found": HttpError(404, "not_found"),
    "final_status": HttpError(409, "final_status"),
    "idempotency_conflict": HttpError(409, "idempotency_conflict"),
    "unsupported_media_type": HttpError(415, "unsupported_media_type"),
    "payload_too_large": HttpError(413, "payload_too_large"),
    "unauthenticated": HttpError(401, "unauthenticated"),
    # Core's message says when the token expired: the holder needs a new one.
    "token_expired": HttpError(401, "token_expired"),
    # A stream ticket unknown, used, expired, or of a token no longer valid: ask for another.
    "ticket_invalid": HttpError(401, "ticket_invalid"),
    "permission_denied": HttpError(403, "permission_denied"),
    "conflict": HttpError(503, "conflict", client_fault=False, retry=True),
    "rate_limited": HttpError(429, "rate_limited", retry=True),
    "range_not_satisfiable": HttpError(416, "range_not_satisfiable"),
}
BY_CODE: dict[grpc.StatusCode, HttpError] = {
    grpc.StatusCode.INVALID_ARGUMENT: BY_REASON["invalid_request"],
    grpc.StatusCode.NOT_FOUND: BY_REASON["not_found"],
    grpc.StatusCode.FAILED_PRECONDITION: BY_REASON["final_status"],
    grpc.StatusCode.ALREADY_EXISTS: HttpError(409, "already_exists"),
    grpc.StatusCode.ABORTED: BY_REASON["conflict"],
    grpc.StatusCode.OUT_OF_RANGE: BY_REASON["range_not_satisfiable"],
    grpc.StatusCode.RESOURCE_EXHAUSTED: BY_REASON["rate_limited"],
    grpc.StatusCode.UNAUTHENTICATED: BY_REASON["unauthenticated"],
    grpc.StatusCode.PERMISSION_DENIED: BY_REASON["permission_denied"],
    grpc.StatusCode.UNAVAILABLE: _UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: _UNAVAILABLE,
    grpc.StatusCode.CANCELLED: _UNAVAILABLE,
}

# Names of the `code` in error bodies for errors Falcon raises itself.
_REASON_BY_STATUS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "invalid_request",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal",
    502: "core_error",
    503: "unavailable",
}


@dataclass(frozen=True)
class CoreStatus:
    """What core said: code, message and the rich details it attached."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    fields: Mapping[str, str] | None = None
    retry_after: float | None = None

    @classmethod
    def of(cls, error: grpc.RpcError) -> CoreStatus:
        return cls._of(RpcStatus.of(error))

    @classmethod
    def of_status(cls, status: status_pb2.Status) -> CoreStatus:
        """What core said of a command of a batch it refused."""
        return cls._of(RpcStatus.of_status(status))

    @classmethod
    def _of(cls, said: RpcStatus) -> CoreStatus:
        fields = dict(said.violations) or None
        return cls(said.code, said.message, said.reason, fields, said.retry_after)


def _mapped(status: CoreStatus) -> HttpError:
    return BY_REASON.get(status.reason) or BY_CODE.get(status.code, _CORE_ERROR)


def refuses_credentials(status: CoreStatus) -> bool:
    """Whether core refused the token the call was made with (unknown, revoked, or of a
    role that may not make it)."""
    return _mapped(status).status in (401, 403)


def from_core(
    status: CoreStatus, *, service_auth: bool = False, retry_after: int = 1
) -> GatewayError:
    """The HTTP error for a failed call to core.

    With service_auth, the call was made with the gateway's own token: core
    refusing it is the gateway's misconfiguration, never the client's fault.
    """
    mapped = _mapped(status)
    if service_auth and refuses_credentials(status):
        log.error(
            "core refused the gateway's service token (%s: %s); check VATS_SERVICE_TOKEN",
            status.code.name,
            status.message,
        )
        mapped = _UNAVAILABLE
    if not mapped.client_fault:
        log.warning("core call failed: %s %s %s", status.code.name, status.reason, status.message)
    headers = {}
    if mapped.retry:
        seconds = status.retry_after if status.retry_after else retry_after
        headers["Retry-After"] = str(max(1, math.ceil(seconds)))
    if mapped is _UNAVAILABLE:
        return unavailable(int(headers["Retry-After"]))
    if mapped.client_fault:
        message = status.message or mapped.reason.replace("_", " ")
    else:
        message = "core could not handle the request, retry later"
    fields = status.fields if mapped.client_fault else None
    return GatewayError(mapped.status, mapped.reason, message, fields, headers)


def from_rpc(
    error: grpc.RpcError, *, service_auth: bool = False, retry_after: int = 1
) -> GatewayError:
    return from_core(CoreStatus.of(error), service_auth=service_auth, retry_after=retry_after)


def error_body(error: falcon.HTTPError) -> dict[str, Any]:
    """The JSON body of any HTTP error, ours or Falcon's."""
    if isinstance(error, GatewayError):
        body: dict[str, Any] = {"code": error.reason, "message": error.message}
        if error.fields:
            body["fields"] = dict(error.fields)
        return {"error": body}
    status = error.status_code
    reason = _REASON_BY_STATUS.get(status, f"http_{status}")
    message = error.description or error.title or reason.replace("_", " ")
    return {"error": {"code": reason, "message": message}}


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Falcon's error serializer: always JSON, whatever the client accepts."""
    resp.content_type = falcon.MEDIA_JSON
    # backslashreplace: a stray surrogate in a message becomes a JSON \uXXXX escape, not a 500.
    text = json.dumps(error_body(error), ensure_ascii=False)
    resp.data = text.encode("utf-8", "backslashreplace")


async def handle_unexpected(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: Exception, params: dict[str, Any]
) -> None:
    """Last resort: a bug is logged with its traceback, the client gets a plain JSON 500."""
    log.exception("unhandled error in %s %s", req.method, req.path, exc_info=error)
    resp.status = falcon.HTTP_500
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json.dumps({"error": {"code": "internal", "message": "internal error"}}).encode()
