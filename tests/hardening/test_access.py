"""Who may reach what, over the live HTTP gateway: channels, keys, tokens, recording links.

Every secret the module uses is collected as it goes; the last test checks that
none of them reached core's or the gateway's log.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
import pytest

from tests.conftest import LiveStack
from tests.e2e.sse import SSEReader
from tests.hardening.support import Core, call_body, error_of, started
from tests.recordings.recording_samples import pcm_wav

pytestmark = pytest.mark.e2e

LINK_TTL = 3


@dataclass
class Live:
    stack: LiveStack
    core: Core
    http: httpx.Client
    secrets: set[str] = field(default_factory=set)

    def url(self, key: str) -> str:
        return f"{self.stack.http_url}/api/v2/telephony/calls/{key}"

    @property
    def stream_url(self) -> str:
        return f"{self.stack.http_url}/api/v2/telephony/cards/stream"

    def create(self, key: str | None = None, **fields: Any) -> dict[str, Any]:
        response = self.http.post(self.url(key or self.stack.channel_key), json=call_body(**fields))
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    def new_channel(self, name: str) -> tuple[int, str]:
        made = self.core.create_channel(name)
        self.secrets.add(made.key)
        return made.channel.channel_id, made.key


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    env = {"VATS_RATE_LIMIT": "0", "VATS_LINK_TTL_SECONDS": str(LINK_TTL)}
    with started(tmp_path_factory.mktemp("access"), env) as stack:
        core = Core(stack)
        with httpx.Client(timeout=15) as http:
            live = Live(stack, core, http)
            live.secrets |= {
                stack.channel_key,
                stack.admin_token,
                stack.service_token,
                *stack.employee_tokens.values(),
                stack.env["VATS_LINK_SECRET"],
            }
            yield live
        core.close()


def wav(seconds: float = 0.5) -> bytes:
    return pcm_wav(seconds)


def with_recording(live: Live, key: str, **fields: str) -> dict[str, Any]:
    parts: list[tuple[str, tuple[None, str] | tuple[str, bytes, str]]] = [
        (name, (None, value)) for name, value in {**call_body(), **fields}.items()
    ]
    parts.append(("audio_record", ("call.wav", wav(), "audio/wav")))
    response = live.http.post(live.url(key), files=parts)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    assert data["audio_record"], data
    live.secrets.add(parse_qs(urlsplit(data["audio_record"]).query)["signature"][0])
    return data


def link_parts(link: str) -> tuple[str, str, str]:
    split = urlsplit(link)
    query = parse_qs(split.query)
    return split.path.rsplit("/", 1)[1], query["expires"][0], query["signature"][0]


def test_a_channel_key_never_reaches_another_channels_calls(live: Live) -> None:
    _, other_key = live.new_channel("second channel")
    mine = live.create(pbx_call_id="isolated-1", comment="first")
    for which in ({"call_id": mine["call_id"]}, {"pbx_call_id": "isolated-1"}):
        response = live.http.post(
            live.url(other_key),
            json={
                "action": "update_call",
                "call_status": "answered",
                "comment": "intruder",
                **which,
            },
        )
        assert response.status_code == 404, response.text
        assert error_of(response)["code"] == "not_found"
    # The same pbx_call_id on the other channel is another call altogether.
    theirs = live.create(other_key, pbx_call_id="isolated-1")
    assert theirs["call_id"] != mine["call_id"] and theirs["ticket_id"] != mine["ticket_id"]
    call = live.core.get_call(mine["call_id"])
    assert call.state == call.STATE_RINGING
    assert [c.text for c in call.ticket.comments] == ["first"]


def test_an_idempotency_key_is_the_channels_own(live: Live) -> None:
    _, other_key = live.new_channel("third channel")
    headers = {"Idempotency-Key": "shared-retry-key"}
    body = call_body(pbx_call_id="idem-shared")
    mine = live.http.post(live.url(live.stack.channel_key), json=body, headers=headers)
    theirs = live.http.post(live.url(other_key), json=body, headers=headers)
    assert mine.status_code == theirs.status_code == 200
    assert mine.json()["data"]["call_id"] != theirs.json()["data"]["call_id"]


def test_rotated_and_disabled_keys_stop_at_once(live: Live) -> None:
    channel_id, old_key = live.new_channel("rotating channel")
    assert live.http.post(live.url(old_key), json=call_body()).status_code == 200
    rotated = live.core.rotate_key(channel_id)
    live.secrets.add(rotated.key)
    # No grace period: the very next request with the old key is refused.
    for key in (old_key, "@" + old_key):
        response = live.http.post(live.url(key), json=call_body())
        assert response.status_code == 404, response.text
        assert old_key not in response.text
    assert live.http.post(live.url(rotated.key), json=call_body()).status_code == 200
    live.core.set_enabled(channel_id, False)
    disabled = live.http.post(live.url(rotated.key), json=call_body())
    unknown = live.http.post(live.url("no-such-key-at-all"), json=call_body())
    # Disabled and unknown look the same: no hint which.
    assert disabled.status_code == unknown.status_code == 404
    assert error_of(disabled) == error_of(unknown)
    live.core.set_enabled(channel_id, True)
    assert live.http.post(live.url(rotated.key), json=call_body()).status_code == 200


def test_employee_tokens_see_only_their_cards(live: Live) -> None:
    # An employee cannot ask for someone else's stream.
    boris_as_anna = SSEReader(f"{live.stream_url}?employee_id=2&access_token=demo-anna")
    assert boris_as_anna.status == 403
    boris_as_anna.close()
    anna = SSEReader(live.stream_url, {"Authorization": "Bearer demo-anna"})
    boris = SSEReader(f"{live.stream_url}?access_token=demo-boris")
    try:
        for reader in (anna, boris):
            assert reader.status == 200
            while not reader.nothing_more(0.3):
                while not reader.events.empty():
                    reader.events.get_nowait()
        for_boris = live.create(user_ids=[2])
        shown = boris.next()
        assert shown.event == "show" and shown.json["call_id"] == for_boris["call_id"]
        assert anna.nothing_more(0.5)
        for_both = live.create(group_ids=[10])
        for reader in (anna, boris):
            assert reader.next().json["call_id"] == for_both["call_id"]
    finally:
        for reader in (anna, boris):
            reader.close()


def test_employee_tokens_see_only_their_calls(live: Live) -> None:
    for_boris = live.create(user_ids=[2])
    for_anna = live.create(user_ids=[1])
    anna_sees = {c.call_id for c in live.core.list_calls(token="demo-anna")}
    assert for_anna["call_id"] in anna_sees and for_boris["call_id"] not in anna_sees
    with pytest.raises(grpc.RpcError) as refused:
        live.core.get_call(for_boris["call_id"], token="demo-anna")
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as listing:
        live.core.list_calls(token="demo-anna", employee_id=2)
    assert listing.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The same over HTTP (the helpdesk's call history).
    anna = {"Authorization": "Bearer demo-anna"}
    history = f"{live.stack.http_url}/api/v2/telephony/history"
    listed = live.http.get(history, headers=anna, params={"page_size": 500})
    assert listed.status_code == 200, listed.text
    listed_ids = {c["call_id"] for c in listed.json()["data"]}
    assert for_anna["call_id"] in listed_ids and for_boris["call_id"] not in listed_ids
    assert live.http.get(f"{history}/{for_anna['call_id']}", headers=anna).status_code == 200
    hidden = live.http.get(f"{history}/{for_boris['call_id']}", headers=anna)
    assert hidden.status_code == 404 and error_of(hidden)["code"] == "not_found"


def test_recordings_reach_only_their_audience(live: Live) -> None:
    data = with_recording(live, live.stack.channel_key, **{"user_ids[]": "1"})
    recording_id, _, _ = link_parts(data["audio_record"])
    records = f"{live.stack.http_url}/api/v2/telephony/records/{recording_id}"
    assert live.http.get(data["audio_record"]).content == wav()
    assert live.http.get(records, headers={"Authorization": "Bearer demo-anna"}).status_code == 200
    for headers in (
        {"Authorization": "Bearer demo-boris"},  # an employee the call was not shown to
        {"Authorization": f"Bearer {live.stack.channel_key}"},  # a channel key is no token
        {"Authorization": "Bearer no-such-token"},
        {},
    ):
        response = live.http.get(records, headers=headers)
        assert response.status_code in (401, 403, 404), (headers, response.status_code)
        error_of(response)
        assert response.content != wav()


def test_recording_links_cannot_be_forged_or_reused_after_expiry(live: Live) -> None:
    _, other_key = live.new_channel("recording channel")
    first = with_recording(live, live.stack.channel_key)
    second = with_recording(live, other_key)
    first_id, expires, signature = link_parts(first["audio_record"])
    second_id, second_expires, second_signature = link_parts(second["audio_record"])
    base = f"{live.stack.http_url}/api/v2/telephony/records/"
    assert live.http.get(first["audio_record"]).status_code == 200
    forged = [
        (first_id, expires, "A" + signature[1:]),
        (first_id, expires, signature[:-1]),
        (first_id, str(int(expires) + 3600), signature),
        (first_id, expires, second_signature),
        (second_id, expires, signature),  # one recording's signature on another
        (first_id, second_expires, second_signature),
        (first_id, "", signature),
        (first_id, expires, ""),
        (first_id.upper(), expires, signature),
    ]
    for recording_id, exp, sig in forged:
        response = live.http.get(base + recording_id, params={"expires": exp, "signature": sig})
        assert response.status_code in (403, 404), (recording_id, exp, sig, response.text)
        assert error_of(response)["code"] in ("permission_denied", "not_found")
    # The genuine link works until it expires, and never after.
    time.sleep(max(0.0, int(expires) - time.time()) + 0.2)
    expired = live.http.get(first["audio_record"])
    assert expired.status_code == 403 and error_of(expired)["code"] == "permission_denied"


def test_revoked_tokens_stop_at_once(live: Live) -> None:
    issued = live.core.issue_employee_token(1)
    live.secrets.add(issued.secret)
    data = with_recording(live, live.stack.channel_key, **{"user_ids[]": "1"})
    recording_id, _, _ = link_parts(data["audio_record"])
    records = f"{live.stack.http_url}/api/v2/telephony/records/{recording_id}"
    bearer = {"Authorization": f"Bearer {issued.secret}"}
    assert live.http.get(records, headers=bearer).status_code == 200
    stream = SSEReader(live.stream_url, bearer)
    assert stream.status == 200
    live.core.revoke_token(issued.token.token_id)
    # The stream that was open with it ends at once too.
    stream._thread.join(timeout=5)
    assert not stream._thread.is_alive(), "a revoked token's card stream stayed open"
    stream.close()
    response = live.http.get(records, headers=bearer)
    assert response.status_code == 401 and error_of(response)["code"] == "unauthenticated"
    refused = SSEReader(f"{live.stream_url}?access_token={issued.secret}")
    refused.close()
    assert refused.status == 401


def test_no_key_token_or_signature_is_logged(live: Live) -> None:
    # Use every kind of secret once more, so that this test means something on its own.
    data = with_recording(live, "@" + live.stack.channel_key)
    assert live.http.get(data["audio_record"]).status_code == 200
    reader = SSEReader(f"{live.stream_url}?access_token=demo-vera")
    reader.close()
    live.http.post(live.url("a-wrong-key-" + "x" * 20), json=call_body())
    live.secrets.add("a-wrong-key-" + "x" * 20)
    time.sleep(0.3)  # let both processes write their last lines
    logs = {name: live.stack.log(name) for name in ("core", "gateway")}
    # Requests are logged (by route template), so the absence of secrets below means something.
    assert "/api/v2/telephony/calls/{channel_key}" in logs["gateway"]
    assert "/api/v2/telephony/records/{recording_id}" in logs["gateway"]
    leaked = {
        (name, secret)
        for name, text in logs.items()
        for secret in live.secrets
        if len(secret) >= 8 and secret in text
    }
    assert not leaked, leaked
