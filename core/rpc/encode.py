"""Records to telephony.v1 messages: what every servicer replies with."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from core import domain
from core.auth import Role
from core.model import CallView, Channel, Contact, Department, Employee, Group, Recording, Token
from telephony.v1 import call_pb2, channel_service_pb2, directory_service_pb2
from vocabulary import DIRECTION, FORMAT, ROLE, STATUS

# A field given as None is left unset (protobuf's constructors skip None): an `optional`
# field of a record that has no value stays absent on the wire.

# Builds the signed path and expiry of a recording's download link.
LinkMaker = Callable[[str], tuple[str, datetime]]


def state_of(status: domain.Status) -> call_pb2.Call.State:
    return STATUS.number(domain.Status(status))


def direction_of(direction: domain.Direction) -> call_pb2.Direction:
    return DIRECTION.number(domain.Direction(direction))


def role_of(role: str) -> directory_service_pb2.Role:
    return ROLE.number(Role(role))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime | None) -> Timestamp | None:
    """As Timestamp.FromDatetime (a naive time is UTC), in whole integers, at a quarter
    of its cost: a call carries seven of them."""
    if value is None:
        return None
    since = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - _EPOCH
    return Timestamp(seconds=since.days * 86400 + since.seconds, nanos=since.microseconds * 1000)


def duration(value: timedelta | float | None) -> Duration | None:
    if value is None:
        return None
    d = Duration()
    if isinstance(value, timedelta):
        d.FromTimedelta(value)
    else:
        d.FromTimedelta(timedelta(seconds=value))
    return d


def recording_message(recording: Recording, links: LinkMaker | None) -> call_pb2.Recording:
    message = call_pb2.Recording(
        recording_id=recording.recording_id,
        call_id=recording.call_id or 0,
        format=FORMAT.number(recording.format),
        content_type=recording.content_type,
        size_bytes=recording.size,
        sha256=recording.sha256,
        duration=duration(recording.duration_seconds or 0.0),
        create_time=timestamp(recording.created_at),
    )
    _sign(message, links)
    return message


def _sign(message: call_pb2.Recording, links: LinkMaker | None) -> None:
    """The recording's download link and its expiry, bound to whom it is handed (none: no
    link)."""
    if links is not None:
        path, expires = links(message.recording_id)
        message.signed_path = path
        message.expire_time.FromDatetime(expires)


def call_message(view: CallView, links: LinkMaker | None = None) -> call_pb2.Call:
    call = view.call
    ticket = view.ticket
    contact = view.contact
    current = view.current_recording
    return call_pb2.Call(
        call_id=call.call_id,
        channel_id=call.channel_id,
        channel_name=view.channel_name,
        direction=direction_of(call.direction),
        phone=call.phone,
        phone_e164=call.phone_e164,
        phone_display=domain.phone_display(call.phone, call.phone_e164),
        user_name=view.user_name,
        state=state_of(call.status),
        audience_employee_ids=list(call.audience),
        status_history=[
            call_pb2.StatusChange(state=state_of(h.status), time=timestamp(h.at))
            for h in call.history
        ],
        create_time=timestamp(call.created_at),
        answer_time=timestamp(call.answered_at),
        end_time=timestamp(call.ended_at),
        talk_duration=duration(call.talk_duration),
        update_time=timestamp(call.updated_at),
        ticket=call_pb2.Ticket(
            ticket_id=ticket.ticket_id,
            department_id=ticket.department_id,
            executor_employee_id=ticket.executor_id,
            contact=call_pb2.Contact(
                contact_id=contact.contact_id if contact else 0,
                name=contact.name if contact else "",
                phone_e164=contact.phone_e164 if contact else "",
            ),
            comments=[
                call_pb2.Comment(text=c.text, create_time=timestamp(c.at), author=c.author)
                for c in ticket.comments
            ],
            create_time=timestamp(ticket.created_at),
        ),
        recordings=[recording_message(r, links) for r in view.recordings],
        pbx_call_id=call.pbx_call_id,
        user_id=call.user_id,
        pbx_user_id=call.pbx_user_id,
        recording=None if current is None else recording_message(current, links),
    )


def reply_call_message(view: CallView, links: LinkMaker | None = None) -> call_pb2.Call:
    """The fields of a call the PBX is answered with (SubmitCallsRequest.brief)."""
    call = view.call
    current = view.current_recording
    message = call_pb2.Call(
        call_id=call.call_id,
        state=state_of(call.status),
        pbx_call_id=call.pbx_call_id,
        user_id=call.user_id,
        pbx_user_id=call.pbx_user_id,
        ticket=call_pb2.Ticket(ticket_id=view.ticket.ticket_id),
    )
    if current is not None:
        message.recording.recording_id = current.recording_id
        _sign(message.recording, links)
    return message


def card_message(view: CallView, links: LinkMaker | None = None) -> call_pb2.CallCard:
    card = view.card()
    message = call_pb2.CallCard(
        call_id=card.call_id,
        ticket_id=card.ticket_id,
        channel_id=card.channel_id,
        channel_name=card.channel_name,
        direction=direction_of(card.direction),
        phone=card.phone,
        phone_display=domain.phone_display(card.phone, view.call.phone_e164),
        contact_name=card.contact_name,
        state=state_of(card.status),
        user_name=card.user_name,
        create_time=timestamp(card.created_at),
        user_id=card.user_id,
        pbx_call_id=card.pbx_call_id,
    )
    if card.recording_id is not None and links is not None:
        message.recording_path = links(card.recording_id)[0]
    return message


def channel_message(channel: Channel) -> channel_service_pb2.Channel:
    return channel_service_pb2.Channel(
        channel_id=channel.channel_id,
        name=channel.name,
        department_id=channel.department_id,
        enabled=channel.enabled,
        pbx_users=dict(channel.pbx_users),
        create_time=timestamp(channel.created_at),
    )


def token_message(token: Token) -> directory_service_pb2.Token:
    return directory_service_pb2.Token(
        token_id=token.token_id,
        role=role_of(token.role),
        employee_id=token.employee_id or 0,
        description=token.description,
        create_time=timestamp(token.created_at),
        expire_time=timestamp(token.expires_at),
    )


def contact_message(contact: Contact) -> directory_service_pb2.PhoneContact:
    return directory_service_pb2.PhoneContact(
        contact_id=contact.contact_id,
        name=contact.name,
        # A number that is not possible in E.164 is matched on its digits alone.
        phone=contact.phone_e164 or "".join(ch for ch in contact.key if ch.isdigit()),
        create_time=timestamp(contact.created_at),
    )


def department_message(department: Department) -> directory_service_pb2.Department:
    return directory_service_pb2.Department(
        department_id=department.department_id, name=department.name
    )


def employee_message(employee: Employee) -> directory_service_pb2.Employee:
    return directory_service_pb2.Employee(
        employee_id=employee.employee_id, name=employee.name, telephony=employee.telephony
    )


def group_message(group: Group) -> directory_service_pb2.Group:
    return directory_service_pb2.Group(
        group_id=group.group_id, name=group.name, member_employee_ids=list(group.members)
    )
