"""The gateway's card feed end to end: real core and gateway processes.

Each gateway holds one feed of card events from core and delivers the browsers' streams
itself: routed by employee, ended when their token is revoked, kept open and exact across
a core restart, and the same from every gateway in front of one core.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from telephony.v1 import directory_service_pb2 as dr
from telephony.v1 import directory_service_pb2_grpc
from tests.conftest import ROOT, LiveStack, bearer, free_port, running_stack
from tests.e2e.sse import SSEReader

pytestmark = pytest.mark.e2e

ADMIN = bearer("demo-admin")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LiveStack]:
    with running_stack(tmp_path) as stack:
        yield stack


@pytest.fixture
def readers() -> Iterator[list[SSEReader]]:
    opened: list[SSEReader] = []
    yield opened
    for reader in opened:
        reader.close()


def post(stack: LiveStack, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(stack.calls_url, json=body, timeout=10)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def incoming(user_ids: list[int]) -> dict[str, Any]:
    return {
        "action": "create_call",
        "direction": "incoming",
        "phone": "+74951234567",
        "user_ids": user_ids,
    }


def open_stream(
    http_url: str,
    token: str,
    readers: list[SSEReader],
    last_event_id: str | None = None,
) -> SSEReader:
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    reader = SSEReader(f"{http_url}/api/v2/telephony/cards/stream", headers)
    readers.append(reader)
    assert reader.status == 200, getattr(reader, "body", "")
    return reader


def wait_until_ready(stack: LiveStack) -> None:
    deadline = time.monotonic() + 15
    while httpx.get(f"{stack.http_url}/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the gateway did not reconnect to core"
        time.sleep(0.1)


@pytest.mark.parametrize("stop", ["graceful", "sigkill"])
def test_an_open_stream_continues_exactly_across_a_core_restart(
    stack: LiveStack, readers: list[SSEReader], stop: str
) -> None:
    first = post(stack, incoming([1, 2]))
    anna = open_stream(stack.http_url, "demo-anna", readers)
    shown = anna.next()
    assert (shown.event, shown.json["call_id"]) == ("show", first["call_id"])

    if stop == "sigkill":
        stack.kill_core()
    else:
        stack.stop_core()
    stack.start_core()
    wait_until_ready(stack)
    # Committed while the gateway's feed may still be reconnecting: core replays them.
    second = post(stack, incoming([1, 2]))
    post(stack, {"action": "update_call", "call_id": first["call_id"], "call_status": "answered"})
    third = post(stack, incoming([1]))

    after = anna.take(3)
    assert [(e.event, e.json["call_id"]) for e in after] == [
        ("show", second["call_id"]),
        ("hide", first["call_id"]),
        ("show", third["call_id"]),
    ]
    seqs = [int(shown.id or 0)] + [int(e.id or 0) for e in after]
    assert seqs == sorted(set(seqs)), "every event once, in order"
    assert anna.nothing_more()


def test_cards_are_routed_by_employee(stack: LiveStack, readers: list[SSEReader]) -> None:
    anna = open_stream(stack.http_url, "demo-anna", readers)
    boris = open_stream(stack.http_url, "demo-boris", readers)
    for_boris = post(stack, incoming([2]))
    for_anna = post(stack, incoming([1]))
    assert (boris.next().json["call_id"]) == for_boris["call_id"]
    # Anna's first card is her own: Boris's never reached her stream.
    assert anna.next().json["call_id"] == for_anna["call_id"]
    assert anna.nothing_more() and boris.nothing_more()


def test_revoking_a_token_ends_the_streams_opened_with_it(
    stack: LiveStack, readers: list[SSEReader]
) -> None:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        directory = directory_service_pb2_grpc.DirectoryServiceStub(channel)
        issued = directory.IssueToken(
            dr.IssueTokenRequest(role=dr.ROLE_EMPLOYEE, employee_id=1), metadata=ADMIN, timeout=5
        )
        revoked = open_stream(stack.http_url, issued.secret, readers)
        kept = open_stream(stack.http_url, "demo-anna", readers)
        directory.RevokeToken(
            dr.RevokeTokenRequest(token_id=issued.token.token_id), metadata=ADMIN, timeout=5
        )
    revoked._thread.join(timeout=10)
    assert not revoked._thread.is_alive(), "the stream of a revoked token stayed open"
    call = post(stack, incoming([1]))
    assert kept.next().json["call_id"] == call["call_id"]
    again = httpx.get(
        f"{stack.http_url}/api/v2/telephony/cards/stream",
        headers={"Authorization": f"Bearer {issued.secret}"},
        timeout=10,
    )
    assert again.status_code == 401


def start_second_gateway(stack: LiveStack) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**stack.env, "VATS_HTTP_ADDR": f"127.0.0.1:{port}"}
    with open(stack.workdir / "gateway-2.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the second gateway did not start")
        time.sleep(0.1)


def test_two_gateways_on_one_core_both_deliver(stack: LiveStack, readers: list[SSEReader]) -> None:
    second, second_url = start_second_gateway(stack)
    try:
        anna_here = open_stream(stack.http_url, "demo-anna", readers)
        anna_there = open_stream(second_url, "demo-anna", readers)
        boris_there = open_stream(second_url, "demo-boris", readers)
        call = post(stack, incoming([1, 2]))
        events = [reader.next() for reader in (anna_here, anna_there, boris_there)]
        assert {(e.event, e.json["call_id"], e.id) for e in events} == {
            ("show", call["call_id"], events[0].id)
        }
        # A stream moved to the other gateway resumes where it was.
        answered = post(
            stack, {"action": "update_call", "call_id": call["call_id"], "call_status": "answered"}
        )
        anna_here.close()
        moved = open_stream(second_url, "demo-anna", readers, last_event_id=events[0].id)
        hidden = moved.next()
        assert (hidden.event, hidden.json["call_id"]) == ("hide", answered["call_id"])
        assert moved.nothing_more()
    finally:
        second.terminate()
        second.wait(timeout=10)
