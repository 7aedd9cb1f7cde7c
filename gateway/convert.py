"""Between the wire (PBX names, JSON, SSE) and telephony.v1 messages."""

from __future__ import annotations

from typing import Any

from falcon.asgi import SSEvent

from gateway import forms
from telephony.v1 import call_pb2, call_service_pb2

STATE_BY_STATUS: dict[str, call_pb2.Call.State] = {
    "ringing": call_pb2.Call.STATE_RINGING,
    "in-progress": call_pb2.Call.STATE_IN_PROGRESS,
    "canceled": call_pb2.Call.STATE_CANCELED,
    "missed": call_pb2.Call.STATE_MISSED,
    "failed": call_pb2.Call.STATE_FAILED,
    "answered": call_pb2.Call.STATE_ANSWERED,
    "busy": call_pb2.Call.STATE_BUSY,
}
STATUS_BY_STATE = {state: status for status, state in STATE_BY_STATUS.items()}
DIRECTION_BY_NAME: dict[str, call_pb2.Direction] = {
    "incoming": call_pb2.DIRECTION_INCOMING,
    "outgoing": call_pb2.DIRECTION_OUTGOING,
}
NAME_BY_DIRECTION = {direction: name for name, direction in DIRECTION_BY_NAME.items()}
EVENT_NAMES = {
    call_service_pb2.CallCardEvent.TYPE_SHOW: "show",
    call_service_pb2.CallCardEvent.TYPE_UPDATE: "update",
    call_service_pb2.CallCardEvent.TYPE_HIDE: "hide",
    call_service_pb2.CallCardEvent.TYPE_RESET: "reset",
}


def channel_ref(channel_key: str) -> call_service_pb2.ChannelRef:
    return call_service_pb2.ChannelRef(channel_key=channel_key.removeprefix("@"))


def create_request(
    form: forms.CreateCall, channel_key: str, idempotency_key: str, recording_id: str
) -> call_service_pb2.CreateCallRequest:
    request = call_service_pb2.CreateCallRequest(
        channel=channel_ref(channel_key),
        direction=DIRECTION_BY_NAME.get(form.direction or "", call_pb2.DIRECTION_UNSPECIFIED),
        phone=form.phone or "",
        state=STATE_BY_STATUS.get(form.call_status or "", call_pb2.Call.STATE_UNSPECIFIED),
        pbx_user_ids=form.pbx_user_ids,
        user_ids=form.user_ids,
        group_ids=form.group_ids,
        idempotency_key=idempotency_key,
        recording_id=recording_id,
    )
    if form.pbx_call_id is not None:
        request.pbx_call_id = form.pbx_call_id
    if form.comment is not None:
        request.comment = form.comment
    return request


def update_request(
    form: forms.UpdateCall, channel_key: str, idempotency_key: str, recording_id: str
) -> call_service_pb2.UpdateCallRequest:
    request = call_service_pb2.UpdateCallRequest(
        channel=channel_ref(channel_key),
        state=STATE_BY_STATUS.get(form.call_status or "", call_pb2.Call.STATE_UNSPECIFIED),
        idempotency_key=idempotency_key,
        recording_id=recording_id,
    )
    if form.call_id is not None:
        request.call_id = form.call_id
    if form.pbx_call_id is not None:
        request.pbx_call_id = form.pbx_call_id
    if form.user_id is not None:
        request.user_id = form.user_id
    if form.pbx_user_id is not None:
        request.pbx_user_id = form.pbx_user_id
    if form.comment is not None:
        request.comment = form.comment
    return request


def absolute_link(public_url: str, signed_path: str) -> str | None:
    if not signed_path:
        return None
    if signed_path.startswith(("http://", "https://")):
        return signed_path
    return public_url.rstrip("/") + "/" + signed_path.lstrip("/")


def call_reply(call: call_pb2.Call, public_url: str) -> dict[str, Any]:
    """The PBX reply, exactly the original's shape."""
    recording = call.recording.signed_path if call.HasField("recording") else ""
    return {
        "data": {
            "call_id": call.call_id,
            "pbx_call_id": call.pbx_call_id if call.HasField("pbx_call_id") else None,
            "user_id": call.user_id if call.HasField("user_id") else None,
            "pbx_user_id": call.pbx_user_id if call.HasField("pbx_user_id") else None,
            "call_status": STATUS_BY_STATE.get(call.state),
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
        "direction": NAME_BY_DIRECTION.get(card.direction),
        "phone": card.phone,
        "contact_name": card.contact_name,
        "call_status": STATUS_BY_STATE.get(card.state),
        "user_id": card.user_id if card.HasField("user_id") else None,
        "user_name": card.user_name,
        "pbx_call_id": card.pbx_call_id if card.HasField("pbx_call_id") else None,
        "created_at": card.create_time.ToJsonString() if card.HasField("create_time") else None,
        "audio_record": absolute_link(public_url, card.recording_path),
    }


def card_event(event: call_service_pb2.CallCardEvent, public_url: str) -> SSEvent | None:
    """The SSE message for a card event; None for event types this gateway does not know."""
    name = EVENT_NAMES.get(event.type)
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
