"""Core killed with SIGKILL while the PBX reports calls: after a restart every
answered request is stored whole, and re-sending the unanswered ones completes
them without a duplicate."""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

import vocabulary
from telephony.v1 import call_pb2, call_service_pb2, call_service_pb2_grpc
from tests.conftest import LiveStack, bearer, running_stack

pytestmark = pytest.mark.e2e

ROUNDS = 5
CLIENTS = 6
NEW_CALLS_PER_CLIENT = 25
# Each client's bound per round, whenever the kill comes.
MAX_REQUESTS_PER_CLIENT = 100
ADMIN = bearer(LiveStack.admin_token)
STATE_NAMES = {vocabulary.STATUS.number(name): name for name in vocabulary.STATUS}


@dataclasses.dataclass
class Step:
    fields: dict[str, str]
    idempotency_key: str | None

    @property
    def status(self) -> str:
        return self.fields["call_status"]

    @property
    def comment(self) -> str | None:
        return self.fields.get("comment")


@dataclasses.dataclass
class PlannedCall:
    """One call as the PBX reports it, step by step, in order."""

    pbx_call_id: str
    phone: str
    steps: list[Step]
    # Steps answered with a 2xx.
    answered: int = 0
    # steps[answered] was sent and got no answer or a 5xx: it may or may not be stored.
    unanswered: bool = False
    call_id: int | None = None

    @property
    def finished(self) -> bool:
        return self.answered == len(self.steps)

    @property
    def statuses(self) -> list[str]:
        return [s.status for s in self.steps[: self.answered]]


def plan_call(number: int, rng: random.Random) -> PlannedCall:
    pbx_call_id = f"crash-{number}"
    # Every third call's requests also carry an Idempotency-Key.
    keyed = number % 3 == 0

    def step(index: int, **fields: str) -> Step:
        return Step(fields, f"{pbx_call_id}/{index}" if keyed else None)

    steps = [
        step(
            0,
            action="create_call",
            direction=rng.choice(["incoming", "outgoing"]),
            phone=f"+7495{number:07d}",
            pbx_call_id=pbx_call_id,
            call_status="ringing",
            comment=f"{pbx_call_id} opened",
        )
    ]
    ending = rng.choice(["answered", "busy", "missed"])
    if ending != "missed":
        steps.append(
            step(
                1,
                action="update_call",
                pbx_call_id=pbx_call_id,
                call_status="in-progress",
                pbx_user_id=rng.choice(["101", "102", "103"]),
            )
        )
    steps.append(
        step(
            len(steps),
            action="update_call",
            pbx_call_id=pbx_call_id,
            call_status=ending,
            comment=f"{pbx_call_id} {ending}",
        )
    )
    return PlannedCall(pbx_call_id, f"+7495{number:07d}", steps)


def send(http: httpx.Client, stack: LiveStack, call: PlannedCall) -> int | None:
    """Sends the call's next step; the HTTP status, or None when no answer came."""
    step = call.steps[call.answered]
    headers = {"Idempotency-Key": step.idempotency_key} if step.idempotency_key else {}
    try:
        response = http.post(stack.calls_url, data=step.fields, headers=headers)
    except httpx.TransportError:
        call.unanswered = True
        return None
    if response.status_code >= 500:
        call.unanswered = True
    elif response.status_code < 300:
        call_id = response.json()["data"]["call_id"]
        assert call.call_id in (None, call_id), f"{call.pbx_call_id} became another call"
        call.call_id = call_id
        call.answered += 1
        call.unanswered = False
    return response.status_code


def report_calls(stack: LiveStack, calls: list[PlannedCall], refused: list[str]) -> None:
    """One PBX client: a few calls in flight at once, until core stops answering."""
    with httpx.Client(timeout=10) as http:
        for turn in range(MAX_REQUESTS_PER_CLIENT):
            in_flight = [c for c in calls if not c.finished][:4]
            if not in_flight:
                return
            call = in_flight[turn % len(in_flight)]
            status = send(http, stack, call)
            if status is None or status >= 500:
                return
            if status >= 300:
                refused.append(f"{call.pbx_call_id} step {call.answered}: HTTP {status}")
                return


def wait_until_ready(stack: LiveStack) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{stack.http_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the gateway did not reach core again"
        time.sleep(0.05)


def stored_calls(stack: LiveStack) -> list[call_pb2.Call]:
    calls: list[call_pb2.Call] = []
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = call_service_pb2_grpc.CallServiceStub(channel)
        token = ""
        while True:
            reply = stub.ListCalls(
                call_service_pb2.ListCallsRequest(page_size=500, page_token=token),
                metadata=ADMIN,
                timeout=30,
            )
            calls += reply.calls
            token = reply.next_page_token
            if not token:
                return calls


def last_seq(stack: LiveStack) -> int:
    """The seq of the newest event: Anna's card stream starts with a snapshot that
    is current as of it (she always sees the marker call's card)."""
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stream = call_service_pb2_grpc.CallServiceStub(channel).WatchCallCards(
            call_service_pb2.WatchCallCardsRequest(employee_id=1),
            metadata=ADMIN,
            timeout=10,
        )
        first = next(stream)
        stream.cancel()
    return int(first.seq)


def call_events(stack: LiveStack, after_seq: int) -> list[call_service_pb2.CallEvent]:
    """Every event after `after_seq` up to the newest, replayed by WatchCalls."""
    end = last_seq(stack)
    events: list[call_service_pb2.CallEvent] = []
    if end == after_seq:
        return events
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stream = call_service_pb2_grpc.CallServiceStub(channel).WatchCalls(
            call_service_pb2.WatchCallsRequest(after_seq=after_seq), metadata=ADMIN, timeout=30
        )
        for event in stream:
            assert event.type != call_service_pb2.CallEvent.TYPE_RESET, event
            events.append(event)
            if event.seq >= end:
                break
        stream.cancel()
    return events


def check_stored(stack: LiveStack, planned: list[PlannedCall], marker: int) -> int:
    """What core holds now agrees with every answer the PBX got. Returns how many
    unanswered requests were stored all the same (killed after the commit)."""
    calls = stored_calls(stack)
    for call in calls:
        assert call.ticket.ticket_id, f"call {call.call_id} has no ticket"
        assert call.ticket.contact.contact_id, f"call {call.call_id} has no contact"
    counts = Counter(c.pbx_call_id for c in calls if c.HasField("pbx_call_id"))
    assert [p for p, n in counts.items() if n > 1] == [], "one PBX call stored twice"
    by_pbx_id = {c.pbx_call_id: c for c in calls if c.HasField("pbx_call_id")}
    events = call_events(stack, marker)
    assert {e.call.call_id for e in events} <= {c.call_id for c in calls}, (
        "an event of a call that is not stored"
    )
    stored_unanswered = 0
    states_seen: dict[int, list[str]] = {}
    for event in events:
        states_seen.setdefault(event.call.call_id, []).append(STATE_NAMES[event.call.state])

    planned_ids = {p.pbx_call_id for p in planned}
    assert set(by_pbx_id) <= planned_ids, "a call nobody reported"
    for plan in planned:
        found = by_pbx_id.get(plan.pbx_call_id)
        if plan.answered == 0:
            # Never answered: stored whole or not at all.
            if not plan.unanswered:
                assert found is None, plan
            if found is None:
                continue
        assert found is not None, f"{plan.pbx_call_id}: answered {plan.answered} steps, not stored"
        call = found
        if plan.call_id is not None:
            assert call.call_id == plan.call_id
        history = [STATE_NAMES[h.state] for h in call.status_history]
        maybe_stored = [plan.steps[plan.answered].status] if plan.unanswered else []
        assert history in (plan.statuses, plan.statuses + maybe_stored), (plan, history)
        stored_unanswered += bool(maybe_stored) and history[-1] == maybe_stored[0]
        assert STATE_NAMES[call.state] == history[-1]
        assert call.phone == plan.phone and call.ticket.contact.phone_e164 == plan.phone
        comments = {c.text for c in call.ticket.comments}
        answered_comments = {s.comment for s in plan.steps[: plan.answered] if s.comment}
        possible_comments = {s.comment for s in plan.steps[: plan.answered + 1] if s.comment}
        assert answered_comments <= comments <= possible_comments, (plan, comments)
        if "in-progress" in history:
            assert call.HasField("user_id") and call.ticket.HasField("executor_employee_id")
        # Each change was logged with it; a repeated request may log its call once more.
        seen = states_seen.get(call.call_id, [])
        assert [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s] == history, (
            plan,
            seen,
        )
    return stored_unanswered


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LiveStack]:
    with running_stack(tmp_path) as stack:
        yield stack


@pytest.mark.timeout(110)
def test_answered_requests_survive_sigkill_and_unanswered_ones_complete_on_retry(
    stack: LiveStack,
) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"random seed {seed}")
    rng = random.Random(seed)
    # A card Anna always sees: its snapshot tells the newest seq, and events after it are ours.
    marker = httpx.post(
        stack.calls_url,
        data={"action": "create_call", "direction": "incoming", "phone": "1", "user_ids[]": "1"},
        timeout=10,
    )
    assert marker.status_code == 200, marker.text
    first_seq = last_seq(stack)
    clients: list[list[PlannedCall]] = [[] for _ in range(CLIENTS)]
    numbers = iter(range(1, 1_000_000))
    unanswered = stored_unanswered = 0

    for _ in range(ROUNDS):
        for calls in clients:
            calls += [plan_call(next(numbers), rng) for _ in range(NEW_CALLS_PER_CLIENT)]
        refused: list[str] = []
        threads = [
            threading.Thread(target=report_calls, args=(stack, calls, refused)) for calls in clients
        ]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.2, 1.5))
        stack.kill_core()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(t.is_alive() for t in threads)
        assert refused == []
        planned = [c for calls in clients for c in calls]
        unanswered += sum(c.unanswered for c in planned)

        stack.start_core()
        wait_until_ready(stack)
        stored_unanswered += check_stored(stack, planned, first_seq)

        with httpx.Client(timeout=10) as http:
            for call in planned:
                if call.unanswered:
                    status = send(http, stack, call)
                    assert status == 200, f"re-sent {call.pbx_call_id}: HTTP {status}"
        check_stored(stack, planned, first_seq)

    answered = sum(c.answered for calls in clients for c in calls)
    print(f"{answered} requests answered; {unanswered} re-sent, {stored_unanswered} of them stored")
    assert answered >= ROUNDS * CLIENTS, "too little load to tell anything"
    assert unanswered >= 1, "the kill never came while the clients were sending"
