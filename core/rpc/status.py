"""The one table from domain errors to gRPC statuses, with the details the gateway reads.

Every status carries a google.rpc.ErrorInfo (reason, domain) and, when fields
were refused, a google.rpc.BadRequest naming them.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from core import errors

ERROR_DOMAIN = "telephony.v1"

STATUS_CODES: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.FinalStatus: grpc.StatusCode.FAILED_PRECONDITION,
    errors.IdempotencyConflict: grpc.StatusCode.ABORTED,
    errors.UnsupportedMedia: grpc.StatusCode.INVALID_ARGUMENT,
    errors.TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Conflict: grpc.StatusCode.ABORTED,
    errors.TooLate: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.RangeNotSatisfiable: grpc.StatusCode.OUT_OF_RANGE,
    errors.ContactInUse: grpc.StatusCode.FAILED_PRECONDITION,
}


def _packed(detail: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


def error_status(error: errors.DomainError) -> grpc.Status:
    return rpc_status.to_status(status_message(error))


def status_message(error: errors.DomainError) -> status_pb2.Status:
    """The google.rpc.Status of a refused request: its code, message and details."""
    # A refinement of an error (a subclass) has the status of the error it refines.
    code = next(
        (STATUS_CODES[kind] for kind in type(error).__mro__ if kind in STATUS_CODES),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    status = status_pb2.Status(code=code.value[0], message=error.message)
    status.details.append(
        _packed(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))
    )
    if error.fields:
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=name, description=text)
            for name, text in sorted(error.fields.items())
        ]
        status.details.append(_packed(error_details_pb2.BadRequest(field_violations=violations)))
    return status


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: errors.DomainError) -> NoReturn:
    await context.abort_with_status(error_status(error))
    raise AssertionError("abort_with_status returned")  # pragma: no cover
