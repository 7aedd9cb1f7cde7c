"""telephony.v1 messages to core's commands and queries: what every servicer reads.

Unknown enum numbers and missing choices are refused with the field they came in.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from core import domain, errors
from core.app.admin import ChannelRef
from core.app.queries import CallFilter
from core.auth import Principal, Role
from telephony.v1 import call_service_pb2
from vocabulary import DIRECTION, ROLE, STATUS


def status_from_proto(state: int) -> domain.Status | None:
    """None for STATE_UNSPECIFIED; unknown numbers are refused by the caller."""
    name = STATUS.name(state)
    return None if name is None else domain.Status(name)


def direction_from_proto(direction: int) -> domain.Direction | None:
    name = DIRECTION.name(direction)
    return None if name is None else domain.Direction(name)


def role_from_proto(role: int) -> Role | None:
    name = ROLE.name(role)
    return None if name is None else Role(name)


def from_timestamp(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def channel_ref(message: call_service_pb2.ChannelRef) -> ChannelRef:
    which = message.WhichOneof("ref")
    if which == "channel_key":
        return ChannelRef(key=message.channel_key)
    if which == "channel_id":
        return ChannelRef(channel_id=message.channel_id)
    raise errors.InvalidRequest.of({"channel": "channel_key or channel_id is required"})


def status(state: int, field: str = "call_status") -> domain.Status | None:
    found = status_from_proto(state)
    if found is None and state != 0:
        raise errors.InvalidRequest.of({field: f"unknown status {state}"})
    return found


def direction(value: int) -> domain.Direction | None:
    found = direction_from_proto(value)
    if found is None and value != 0:
        raise errors.InvalidRequest.of({"direction": f"unknown direction {value}"})
    return found


def role(value: int) -> Role:
    found = role_from_proto(value)
    if found is None:
        raise errors.InvalidRequest.of({"role": ", ".join(ROLE.names)})
    return found


def after_seq(value: int) -> int:
    if value < 0:
        raise errors.InvalidRequest.of({"after_seq": "must not be negative"})
    return value


def card_owner(principal: Principal, request: call_service_pb2.WatchCallCardsRequest) -> int:
    """Whose cards a stream watches: an employee token watches only its own."""
    employee_id = request.employee_id
    if principal.is_employee:
        if employee_id not in (0, principal.employee_id):
            raise errors.PermissionDenied("an employee token watches only its own cards")
        employee_id = principal.employee_id or 0
    if employee_id <= 0:
        raise errors.InvalidRequest.of({"employee_id": "required"})
    after_seq(request.after_seq)
    return employee_id


# The most commands one SubmitCalls may carry.
MAX_BATCH = 256


def batch_size(size: int) -> int:
    if size > MAX_BATCH:
        raise errors.InvalidRequest.of({"commands": f"at most {MAX_BATCH}"})
    return size


def create_command(request: call_service_pb2.CreateCallRequest) -> domain.CreateCall:
    return domain.CreateCall(
        direction=direction(request.direction),
        phone=request.phone,
        status=status(request.state),
        pbx_call_id=request.pbx_call_id if request.HasField("pbx_call_id") else None,
        pbx_user_ids=tuple(request.pbx_user_ids),
        user_ids=tuple(request.user_ids),
        group_ids=tuple(request.group_ids),
        comment=request.comment if request.HasField("comment") else None,
        recording_id=request.recording_id or None,
    )


def update_command(request: call_service_pb2.UpdateCallRequest) -> domain.UpdateCall:
    return domain.UpdateCall(
        status=status(request.state),
        call_id=request.call_id if request.HasField("call_id") else None,
        pbx_call_id=request.pbx_call_id if request.HasField("pbx_call_id") else None,
        user_id=request.user_id if request.HasField("user_id") else None,
        pbx_user_id=request.pbx_user_id if request.HasField("pbx_user_id") else None,
        comment=request.comment if request.HasField("comment") else None,
        recording_id=request.recording_id or None,
    )


def _time(message: call_service_pb2.ListCallsRequest, field: str) -> datetime | None:
    return from_timestamp(getattr(message, field)) if message.HasField(field) else None


def call_filter(request: call_service_pb2.ListCallsRequest) -> CallFilter:
    statuses = [status(state, "states") for state in request.states]
    return CallFilter(
        channel_id=request.channel_id or None,
        phone=request.phone or None,
        statuses=tuple(s for s in statuses if s is not None),
        direction=direction(request.direction),
        employee_id=request.employee_id or None,
        created_from=_time(request, "create_time_from"),
        created_to=_time(request, "create_time_to"),
    )
