"""Between the wire (PBX names, JSON, SSE) and telephony.v1 messages."""

from __future__ import annotations

from typing import Any

from falcon.asgi import SSEvent

from gateway import forms
from telephony.v1 import call_pb2, call_service_pb2
from vocabulary import CARD_EVENT, DIRECTION, STATUS


def channel_ref(channel_key: str) -> call_service_pb2.ChannelRef:
    return call_service_pb2.ChannelRef(channel_key=channel_key.removeprefix("@"))


# A field given as None is left unset (protobuf's constructors skip None), as an absent
# form field leaves the request's `optional` field.


def create_request(
    form: forms.CreateCall, channel_key: str, idempotency_key: str, recording_id: str
) -> call_service_pb2.CreateCallRequest:
    return call_service_pb2.CreateCallRequest(
        channel=channel_ref(channel_key),
        direction=DIRECTION.number(form.direction),
        phone=form.phone or "",
        state=STATUS.number(form.call_status),
        pbx_user_ids=form.pbx_user_ids,
        user_ids=form.user_ids,
        group_ids=form.group_ids,
        idempotency_key=idempotency_key,
        recording_id=recording_id,
        pbx_call_id=form.pbx_call_id,
        comment=form.comment,
    )


def update_request(
    form: forms.UpdateCall, channel_key: str, idempotency_key: str, recording_id: str
) -> call_service_pb2.UpdateCallRequest:
    return call_service_pb2.UpdateCallRequest(
        channel=channel_ref(channel_key),
        state=STATUS.number(form.call_status),
        idempotency_key=idempotency_key,
        recording_id=recording_id,
        call_id=form.call_id,
        pbx_call_id=form.pbx_call_id,
        user_id=form.user_id,
        pbx_user_id=form.pbx_user_id,
        comment=form.comment,
    )


def absolute_link(public_url: str, signed_path: str) -> str | None:
    if not signed_path:
        return None
    if signed_path.startswith(("http://", "https://")):
        return signed_path
    return public_url.rstrip("/") + "/" + signed_path.lstrip("/")


def time_json(message: Any, field: str) -> str | None:
    """A Timestamp field as ISO-8601 UTC, None when it is not set."""
    if not message.HasField(field):
        return None
    return str(getattr(message, field).ToJsonString())


def seconds(message: Any, field: str) -> float | None:
    """A Duration field in seconds, None when it is not set."""
    if not message.HasField(field):
        return None
    return float(getattr(message, field).ToTimedelta().total_seconds())


def optional(message: Any, field: str) -> Any:
    """An `optional` field's value, None when it is not set."""
    return getattr(message, field) if message.HasField(field) else None


def call_reply(call: call_pb2.Call, public_url: str) -> dict[str, Any]:
    """The PBX reply, exactly the original's shape."""
    recording = call.recording.signed_path if call.HasField("recording") else ""
    return {
        "data": {
            "call_id": call.call_id,
            "pbx_call_id": call.pbx_call_id if call.HasField("pbx_call_id") else None,
            "user_id": call.user_id if call.HasField("user_id") else None,
            "pbx_user_id": call.pbx_user_id if call.HasField("pbx_user_id") else None,
            "call_status": STATUS.name(call.state),
            "audio_record": absolute_link(public_url, recording),
            "ticket_id": call.ticket.ticket_id,
        }
    }


def card_json(card: call_pb2.CallCard, public_url: str) -> dict[str, Any]:
    return {
        "call_id": card.call_id,
        "ticket_id": card.ticket_id,
        "channel_id": card.channel_id,
        "channel_name": card.channel_name,
        "direction": DIRECTION.name(card.direction),
        "phone": card.phone,
        "phone_display": card.phone_display,
        "contact_name": card.contact_name,
        "call_status": STATUS.name(card.state),
        "user_id": card.user_id if card.HasField("user_id") else None,
        "user_name": card.user_name,
        "pbx_call_id": card.pbx_call_id if card.HasField("pbx_call_id") else None,
        "created_at": card.create_time.ToJsonString() if card.HasField("create_time") else None,
        "audio_record": absolute_link(public_url, card.recording_path),
    }


def card_event(event: call_service_pb2.CallCardEvent, public_url: str) -> SSEvent | None:
    """The SSE message for a card event; None for event types this gateway does not know."""
    name = CARD_EVENT.name(event.type)
    if name is None:
        return None
    data: dict[str, Any]
    if name == "reset":
        data = {"reason": event.reason}
    else:
        data = card_json(event.card, public_url)
        if name == "hide":
            data["reason"] = event.reason
    return SSEvent(event=name, event_id=str(event.seq), json=data)


def keepalive() -> SSEvent:
    return SSEvent(comment="keepalive")
