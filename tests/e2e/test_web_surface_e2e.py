"""The web surface of the workspace on real core and gateway processes: every route family
answers with the security headers (successes and refusals alike, streams included), a token
is rotated without downtime, and what an employee does over HTTP is audited as that employee."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
import pytest

from telephony.v1 import directory_service_pb2 as dr
from telephony.v1 import directory_service_pb2_grpc
from tests.conftest import LiveStack, bearer
from tests.e2e.sse import SSEReader
from tests.recordings.recording_samples import pcm_wav

pytestmark = pytest.mark.e2e

API = "/api/v2/telephony"
ANNA = 1
EVERYWHERE = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
PAGE_DIRECTIVES = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def directory(live_stack: LiveStack) -> Iterator[directory_service_pb2_grpc.DirectoryServiceStub]:
    with grpc.insecure_channel(live_stack.grpc_target) as channel:
        yield directory_service_pb2_grpc.DirectoryServiceStub(channel)


def issue_anna_token(directory: directory_service_pb2_grpc.DirectoryServiceStub) -> tuple[str, str]:
    """A new token of Anna's: (token id, secret)."""
    reply: dr.IssueTokenResponse = directory.IssueToken(
        dr.IssueTokenRequest(role=dr.ROLE_EMPLOYEE, employee_id=ANNA, description="e2e"),
        metadata=bearer(LiveStack.admin_token),
        timeout=10,
    )
    return reply.token.token_id, reply.secret


def post_call(stack: LiveStack, fields: list[tuple[str, Any]]) -> dict[str, Any]:
    response = httpx.post(stack.calls_url, files=fields, timeout=10)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def missed_call(stack: LiveStack, phone: str) -> int:
    created = post_call(
        stack,
        [
            ("action", (None, "create_call")),
            ("direction", (None, "incoming")),
            ("phone", (None, phone)),
            ("user_ids[]", (None, str(ANNA))),
        ],
    )
    fields = [("action", "update_call"), ("call_id", str(created["call_id"]))]
    post_call(stack, [(k, (None, v)) for k, v in [*fields, ("call_status", "missed")]])
    call_id: int = created["call_id"]
    return call_id


def directives(policy: str) -> dict[str, str]:
    pairs = (part.strip().partition(" ") for part in policy.split(";"))
    return {name: value for name, _, value in pairs}


def assert_secure(response: httpx.Response, *, page: bool = False) -> None:
    headers = response.headers
    assert "server" not in headers
    for name, value in EVERYWHERE.items():
        assert headers.get(name) == value, (name, response.request.url)
    assert headers.get("cache-control") == "no-store", response.request.url
    policy = directives(headers["content-security-policy"])
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert not [v for v in policy.values() if "unsafe" in v]
    if page:
        assert {k: policy.get(k) for k in PAGE_DIRECTIVES} == PAGE_DIRECTIVES


# Headers: one request of each kind per route family, and a refusal of each.

REQUESTS: list[tuple[str, str, str | None, int]] = [
    # (method, path, token, expected status)
    ("GET", "/board", None, 200),
    ("GET", f"{API}/callbacks", "demo-anna", 200),
    ("GET", f"{API}/callbacks?state=bogus", "demo-anna", 422),
    ("GET", f"{API}/callbacks", None, 401),
    ("POST", f"{API}/callbacks/987654321/called-back", "demo-anna", 404),
    ("GET", f"{API}/board", "demo-supervisor", 200),
    ("GET", f"{API}/board", "demo-anna", 403),
    ("GET", f"{API}/board/stream", "demo-anna", 403),
    ("GET", f"{API}/cards/stream?ticket=made-up", None, 401),
    ("POST", f"{API}/stream-tickets", "demo-anna", 201),
    ("POST", f"{API}/stream-tickets", None, 401),
    ("GET", f"{API}/audit", "demo-admin", 200),
    ("GET", f"{API}/audit?since=yesterday", "demo-admin", 422),
    ("GET", f"{API}/audit", "demo-supervisor", 403),
    ("GET", f"{API}/audit/export", "demo-admin", 200),
    ("GET", f"{API}/audit/export", "demo-anna", 403),
    ("GET", f"{API}/records/no-such-recording", None, 401),
    ("POST", f"{API}/calls/no-such-key", None, 415),  # no body: refused before the key
]


@pytest.mark.parametrize(("method", "path", "token", "status"), REQUESTS)
def test_every_route_family_answers_with_the_security_headers(
    live_stack: LiveStack, method: str, path: str, token: str | None, status: int
) -> None:
    headers = auth(token) if token else {}
    response = httpx.request(method, live_stack.http_url + path, headers=headers, timeout=10)
    assert response.status_code == status, response.text
    assert_secure(response, page=path == "/board")


@pytest.mark.parametrize(
    ("path", "token"),
    [(f"{API}/board/stream", "demo-supervisor"), (f"{API}/cards/stream", "demo-anna")],
)
def test_streams_opened_with_a_ticket_carry_the_headers(
    live_stack: LiveStack, path: str, token: str
) -> None:
    ticket = httpx.post(f"{live_stack.http_url}{API}/stream-tickets", headers=auth(token))
    assert ticket.status_code == 201, ticket.text
    url = f"{live_stack.http_url}{path}"
    with httpx.stream("GET", url, params={"ticket": ticket.json()["ticket"]}, timeout=10) as opened:
        assert opened.status_code == 200
        assert opened.headers["content-type"].startswith("text/event-stream")
        assert_secure(opened)


def test_a_recording_and_its_ranges_are_never_stored(live_stack: LiveStack) -> None:
    created = post_call(
        live_stack,
        [
            ("action", (None, "create_call")),
            ("direction", (None, "incoming")),
            ("phone", (None, "+74957100001")),
            ("call_status", (None, "answered")),
            ("audio_record", ("call.wav", pcm_wav(0.5, 8000), "audio/wav")),
        ],
    )
    link = created["audio_record"]
    whole = httpx.get(link, timeout=10)
    part = httpx.get(link, headers={"Range": "bytes=0-99"}, timeout=10)
    assert (whole.status_code, part.status_code) == (200, 206)
    assert_secure(whole)
    assert_secure(part)


# Rotating a token: issue the new one, hand it over, revoke the old one.


def test_a_token_is_rotated_without_downtime(
    live_stack: LiveStack, directory: directory_service_pb2_grpc.DirectoryServiceStub
) -> None:
    base = live_stack.http_url
    old_id, old = issue_anna_token(directory)
    old_ticket = httpx.post(f"{base}{API}/stream-tickets", headers=auth(old), timeout=10)
    assert old_ticket.status_code == 201, old_ticket.text
    with (
        httpx.Client(timeout=httpx.Timeout(10, read=20)) as client,
        client.stream(
            "GET", f"{base}{API}/cards/stream", params={"ticket": old_ticket.json()["ticket"]}
        ) as old_stream,
    ):
        assert old_stream.status_code == 200
        _, new = issue_anna_token(directory)
        # In between, both work.
        for token in (old, new):
            listed = httpx.get(f"{base}{API}/history", headers=auth(token), timeout=10)
            assert listed.status_code == 200, listed.text
        new_stream = SSEReader(
            f"{base}{API}/cards/stream?ticket="
            + httpx.post(f"{base}{API}/stream-tickets", headers=auth(new), timeout=10).json()[
                "ticket"
            ]
        )
        try:
            assert new_stream.status == 200
            directory.RevokeToken(
                dr.RevokeTokenRequest(token_id=old_id),
                metadata=bearer(LiveStack.admin_token),
                timeout=10,
            )
            # The old token's stream ends by itself; keepalives come every second until then.
            deadline = time.monotonic() + 15
            for _ in old_stream.iter_lines():
                assert time.monotonic() < deadline, "the stream outlived its revoked token"
            refused = httpx.get(f"{base}{API}/history", headers=auth(old), timeout=10)
            assert refused.status_code == 401
            # The new token and the stream opened with it carry on.
            assert httpx.get(f"{base}{API}/history", headers=auth(new), timeout=10).is_success
            call_id = missed_call(live_stack, "+74957100002")
            while (event := new_stream.next()).json.get("call_id") != call_id:
                pass
            assert event.event == "show"
        finally:
            new_stream.close()


# The audit log of what an employee does over HTTP.


def audit_entries(stack: LiveStack, action: str, target: str) -> list[dict[str, Any]]:
    listed = httpx.get(
        f"{stack.http_url}{API}/audit",
        headers=auth(LiveStack.admin_token),
        params={"action": action, "page_size": "500"},
        timeout=10,
    )
    assert listed.status_code == 200, listed.text
    return [e for e in listed.json()["data"] if e["target"] == target]


def test_a_callback_marked_over_http_is_one_entry_naming_the_employee(
    live_stack: LiveStack, directory: directory_service_pb2_grpc.DirectoryServiceStub
) -> None:
    token_id, secret = issue_anna_token(directory)
    missed_call(live_stack, "+74957100003")
    listed = httpx.get(f"{live_stack.http_url}{API}/callbacks", headers=auth(secret), timeout=10)
    [callback] = [c for c in listed.json()["data"] if c["phone"] == "+74957100003"]
    target = str(callback["callback_id"])
    marked = httpx.post(
        f"{live_stack.http_url}{API}/callbacks/{target}/called-back",
        headers=auth(secret),
        timeout=10,
    )
    assert marked.status_code == 200, marked.text
    [entry] = audit_entries(live_stack, "callback.marked", target)
    assert entry["actor"] == {"token_id": token_id, "role": "employee", "employee_id": ANNA}
    assert entry["address"].startswith("127.0.0.1 via ipv4:127.0.0.1:")


def _recorded_call_of_anna(stack: LiveStack, phone: str) -> tuple[int, str]:
    """A call shown to Anna with a recording: (call id, recording id)."""
    created = post_call(
        stack,
        [
            ("action", (None, "create_call")),
            ("direction", (None, "incoming")),
            ("phone", (None, phone)),
            ("user_ids[]", (None, str(ANNA))),
            ("call_status", (None, "answered")),
            ("audio_record", ("call.wav", pcm_wav(1.0, 8000), "audio/wav")),
        ],
    )
    return created["call_id"], urlsplit(created["audio_record"]).path.rsplit("/", 1)[-1]


def test_a_recording_downloaded_with_a_token_is_one_entry_naming_the_employee(
    live_stack: LiveStack, directory: directory_service_pb2_grpc.DirectoryServiceStub
) -> None:
    token_id, secret = issue_anna_token(directory)
    call_id, recording_id = _recorded_call_of_anna(live_stack, "+74957100004")
    downloaded = httpx.get(
        f"{live_stack.http_url}{API}/records/{recording_id}", headers=auth(secret), timeout=10
    )
    assert downloaded.status_code == 200
    [entry] = audit_entries(live_stack, "recording.downloaded", recording_id)
    assert entry["actor"] == {"token_id": token_id, "role": "employee", "employee_id": ANNA}
    assert entry["details"]["call_id"] == str(call_id)


def _history_link(stack: LiveStack, secret: str, call_id: int) -> str:
    """The recording link the agent page is handed in Recent, for its <audio> element."""
    shown = httpx.get(f"{stack.http_url}{API}/history/{call_id}", headers=auth(secret), timeout=10)
    assert shown.status_code == 200, shown.text
    [recording] = shown.json()["data"]["recordings"]
    link: str = recording["url"]
    return link


def test_a_recording_played_through_its_link_is_one_entry_naming_the_employee(
    live_stack: LiveStack, directory: directory_service_pb2_grpc.DirectoryServiceStub
) -> None:
    token_id, secret = issue_anna_token(directory)
    call_id, recording_id = _recorded_call_of_anna(live_stack, "+74957100005")
    link = _history_link(live_stack, secret, call_id)
    assert f"token={token_id}" in link and secret not in link

    # A player's requests, as an <audio> element sends them: no token, only the link.
    middle = httpx.get(link, headers={"Range": "bytes=4000-"}, timeout=10)
    assert middle.status_code == 206
    assert audit_entries(live_stack, "recording.downloaded", recording_id) == []
    start = httpx.get(link, headers={"Range": "bytes=0-"}, timeout=10)
    assert start.status_code == 206
    [entry] = audit_entries(live_stack, "recording.downloaded", recording_id)
    assert entry["actor"] == {"token_id": token_id, "role": "employee", "employee_id": ANNA}
    assert entry["address"].startswith("127.0.0.1 via ipv4:127.0.0.1:")
    for seek in ("bytes=8000-", "bytes=100-199"):
        assert httpx.get(link, headers={"Range": seek}, timeout=10).status_code == 206
    assert len(audit_entries(live_stack, "recording.downloaded", recording_id)) == 1


def test_a_link_stops_working_with_the_token_it_was_handed_to(
    live_stack: LiveStack, directory: directory_service_pb2_grpc.DirectoryServiceStub
) -> None:
    token_id, secret = issue_anna_token(directory)
    call_id, _ = _recorded_call_of_anna(live_stack, "+74957100006")
    link = _history_link(live_stack, secret, call_id)
    other_id, _ = issue_anna_token(directory)
    forged = link.replace(f"token={token_id}", f"token={other_id}")
    assert httpx.get(forged, timeout=10).status_code == 403
    assert httpx.get(link, timeout=10).status_code == 200
    directory.RevokeToken(
        dr.RevokeTokenRequest(token_id=token_id), metadata=bearer(LiveStack.admin_token), timeout=10
    )
    refused = httpx.get(link, timeout=10)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
