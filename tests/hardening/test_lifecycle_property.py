"""Random call lifecycles against the live gateway and core, with invariants after every step.

A hypothesis state machine creates calls, repeats creates, updates them in and
out of order and fires several requests at once, over HTTP like a PBX. After
each step it checks core's view (ListCalls) and what three employees' card
streams (WatchCallCards, opened once with the service token) show:

- one call and one ticket per pbx_call_id; call and ticket ids unique;
- a final status, once reached, never changes, and the replies agreed with the
  rules (a final call refuses another status with 409, nothing else does);
- every employee sees the cards of exactly the active calls shown to them
  (the bound employee alone once bound, else the call's audience).

One stack serves the whole module; each sequence uses pbx ids of its own and
ends its calls at teardown, so sequences do not see each other's cards.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import grpc
import httpx
import pytest
from google.protobuf import timestamp_pb2
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import vocabulary
from telephony.v1 import call_pb2, call_service_pb2
from tests.conftest import LiveStack
from tests.hardening.support import SERVICE, Core, auth, started

pytestmark = pytest.mark.e2e

ACTIVE = ("ringing", "in-progress")
FINAL = ("canceled", "missed", "failed", "answered", "busy")
STATUSES = ACTIVE + FINAL
STATUS_OF = {vocabulary.STATUS.number(name): name for name in vocabulary.STATUS}
WATCHED = (1, 2, 3)  # employees with telephony access; 4 has none
TELEPHONY = {1, 2, 3}
PBX_USERS = {"101": 1, "102": 2, "103": 3}
UNKNOWN_EMPLOYEE = 99
SETTLE = 5.0  # how long card streams may take to catch up with a change


@dataclass
class Tally:
    sequences: int = 0
    steps: int = 0
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)

    def count(self, status: int) -> None:
        self.requests += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1


class CardView:
    """What one employee's card stream shows, kept up to date on a thread."""

    def __init__(self, core: Core, employee_id: int) -> None:
        self.visible: set[int] = set()
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.stream = core.calls.WatchCallCards(
            call_service_pb2.WatchCallCardsRequest(employee_id=employee_id),
            metadata=auth(SERVICE),
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        Event = call_service_pb2.CallCardEvent
        try:
            for event in self.stream:
                with self.lock:
                    if event.type in (Event.TYPE_SHOW, Event.TYPE_UPDATE):
                        self.visible.add(event.card.call_id)
                    elif event.type == Event.TYPE_HIDE:
                        self.visible.discard(event.card.call_id)
                    elif event.type == Event.TYPE_RESET:
                        self.visible.clear()
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self.error = error

    def snapshot(self) -> set[int]:
        with self.lock:
            return set(self.visible)

    def close(self) -> None:
        self.stream.cancel()
        self.thread.join(timeout=5)


@dataclass
class World:
    stack: LiveStack
    core: Core
    http: httpx.Client
    pool: concurrent.futures.ThreadPoolExecutor
    views: dict[int, CardView]
    tally: Tally


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with started(tmp_path_factory.mktemp("lifecycle"), {"VATS_RATE_LIMIT": "0"}) as stack:
        core = Core(stack)
        views = {e: CardView(core, e) for e in WATCHED}
        with (
            httpx.Client(timeout=15, limits=httpx.Limits(max_connections=16)) as http,
            concurrent.futures.ThreadPoolExecutor(8) as pool,
        ):
            yield World(stack, core, http, pool, views, Tally())
        for view in views.values():
            view.close()
        core.close()


def viewers(call: call_pb2.Call) -> set[int]:
    """Who must see the card of this call now (SPEC 5)."""
    if STATUS_OF[call.state] in FINAL:
        return set()
    if call.HasField("user_id"):
        return {call.user_id} & TELEPHONY
    return set(call.audience_employee_ids)


audiences = st.one_of(
    st.just({}),
    st.builds(
        lambda ids: {"user_ids": ids},
        st.lists(st.sampled_from([1, 2, 3, 4, 99]), min_size=1, max_size=3),
    ),
    st.builds(
        lambda ids: {"group_ids": ids},
        st.lists(st.sampled_from([10, 20, 77]), min_size=1, max_size=2),
    ),
    st.builds(
        lambda ids: {"pbx_user_ids": ids},
        st.lists(st.sampled_from(["101", "102", "103", "999"]), min_size=1, max_size=3),
    ),
)
# Mostly active statuses at creation, so that there are cards to see.
create_statuses = st.sampled_from(("ringing", "ringing", "ringing", "in-progress", *FINAL))
# Mostly active statuses in updates too: a call that went final early shows no more cards.
update_statuses = st.sampled_from(ACTIVE * 6 + FINAL)
bindings = st.sampled_from(
    [
        {},
        {},
        {"user_id": 1},
        {"user_id": 3},
        {"user_id": 4},
        {"user_id": UNKNOWN_EMPLOYEE},
        {"pbx_user_id": "102"},
        {"pbx_user_id": "999"},
    ]
)


class CallLifecycle(RuleBasedStateMachine):
    world: ClassVar[World]

    def __init__(self) -> None:
        super().__init__()
        self.prefix = uuid.uuid4().hex[:10]
        self.started = timestamp_pb2.Timestamp()
        self.started.GetCurrentTime()
        self.made = 0
        # What this sequence knows: pbx id -> call id, call id -> status as last confirmed.
        self.call_of: dict[str, int] = {}
        self.status: dict[int, str] = {}
        self.final: dict[int, str] = {}
        self.world.tally.sequences += 1

    # --- helpers -----------------------------------------------------------------

    def post(self, body: dict[str, Any]) -> httpx.Response:
        response = self.world.http.post(self.world.stack.calls_url, json=body)
        self.world.tally.count(response.status_code)
        return response

    def broken(self, message: str) -> AssertionError:
        self.world.tally.broken.append(message)
        return AssertionError(message)

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            raise self.broken(message)

    def expected_codes(self, call_id: int, status: str, binding: dict[str, Any]) -> set[int]:
        """What the rules allow as the answer; with two faults, either may be reported."""
        codes = set()
        current = self.status[call_id]
        if current in FINAL and status != current:
            codes.add(409)
        if binding.get("user_id") == UNKNOWN_EMPLOYEE:
            codes.add(422)
        return codes or {200}

    def accept(self, response: httpx.Response, pbx_id: str | None = None) -> None:
        data = response.json()["data"]
        call_id = data["call_id"]
        if pbx_id is not None:
            known = self.call_of.setdefault(pbx_id, call_id)
            self.expect(known == call_id, f"{pbx_id} answered as call {call_id}, was {known}")
        self.status[call_id] = data["call_status"]
        if data["call_status"] in FINAL:
            first = self.final.setdefault(call_id, data["call_status"])
            self.expect(
                first == data["call_status"],
                f"call {call_id} left its final status {first} for {data['call_status']}",
            )

    def calls(self) -> list[call_pb2.Call]:
        return self.world.core.list_calls(create_time_from=self.started)

    def mine(self) -> list[call_pb2.Call]:
        return [c for c in self.calls() if c.pbx_call_id.startswith(self.prefix)]

    # --- rules -------------------------------------------------------------------

    @initialize()
    def settle_previous(self) -> None:
        # Calls of earlier sequences were ended at their teardown: no card is left.
        self.check_cards()

    @rule(audience=audiences, status=create_statuses)
    def create(self, audience: dict[str, Any], status: str) -> None:
        self.made += 1
        pbx_id = f"{self.prefix}-{self.made}"
        response = self.post(
            {
                "action": "create_call",
                "direction": "incoming",
                "phone": "+74957770000",
                "pbx_call_id": pbx_id,
                "call_status": status,
                **audience,
            }
        )
        self.expect(response.status_code == 200, f"create {pbx_id}: {response.text}")
        self.accept(response, pbx_id)

    @precondition(lambda self: self.call_of)
    @rule(data=st.data(), status=update_statuses)
    def duplicate_create(self, data: st.DataObject, status: str) -> None:
        pbx_id = data.draw(st.sampled_from(sorted(self.call_of)))
        call_id = self.call_of[pbx_id]
        expected = self.expected_codes(call_id, status, {})
        response = self.post(
            {
                "action": "create_call",
                "direction": "incoming",
                "phone": "+74957770000",
                "pbx_call_id": pbx_id,
                "call_status": status,
                "user_ids": [2],
            }
        )
        self.expect(
            response.status_code in expected,
            f"duplicate create {pbx_id} {status}: {response.status_code}, expected {expected}",
        )
        if response.status_code == 200:
            self.accept(response, pbx_id)

    @precondition(lambda self: self.call_of)
    @rule(data=st.data(), status=update_statuses, binding=bindings, by_pbx_id=st.booleans())
    def update(
        self, data: st.DataObject, status: str, binding: dict[str, Any], by_pbx_id: bool
    ) -> None:
        pbx_id = data.draw(st.sampled_from(sorted(self.call_of)))
        self._update(pbx_id, status, binding, by_pbx_id)

    def _update(self, pbx_id: str, status: str, binding: dict[str, Any], by_pbx_id: bool) -> None:
        call_id = self.call_of[pbx_id]
        expected = self.expected_codes(call_id, status, binding)
        which = {"pbx_call_id": pbx_id} if by_pbx_id else {"call_id": call_id}
        response = self.post({"action": "update_call", "call_status": status, **which, **binding})
        self.expect(
            response.status_code in expected,
            f"update {pbx_id} {status} {binding}: {response.status_code} {response.text[:200]}, "
            f"expected {expected}",
        )
        if response.status_code == 200:
            self.accept(response, pbx_id)

    @precondition(lambda self: self.call_of)
    @rule(data=st.data(), last=st.sampled_from(STATUSES))
    def reordered_updates(self, data: st.DataObject, last: str) -> None:
        """A PBX's events arriving late and out of order, one by one."""
        pbx_id = data.draw(st.sampled_from(sorted(self.call_of)))
        statuses = data.draw(st.permutations(["ringing", "in-progress", last]))
        for status in statuses:
            self._update(pbx_id, status, {}, by_pbx_id=True)

    @rule(
        fresh=st.booleans(),
        data=st.data(),
        requests=st.lists(
            st.tuples(st.sampled_from(["create", "update"]), update_statuses),
            min_size=2,
            max_size=6,
        ),
    )
    def concurrent(self, fresh: bool, data: st.DataObject, requests: list[tuple[str, str]]) -> None:
        """Several requests about one call at once: retries and races of a PBX."""
        if fresh or not self.call_of:
            self.made += 1
            pbx_id = f"{self.prefix}-{self.made}"
            requests = [("create", "ringing"), *requests]
        else:
            pbx_id = data.draw(st.sampled_from(sorted(self.call_of)))
        bodies = []
        for kind, status in requests:
            if kind == "create":
                bodies.append(
                    {
                        "action": "create_call",
                        "direction": "outgoing",
                        "phone": "+74957770001",
                        "pbx_call_id": pbx_id,
                        "call_status": status,
                    }
                )
            else:
                bodies.append(
                    {"action": "update_call", "pbx_call_id": pbx_id, "call_status": status}
                )
        before = self.status.get(self.call_of.get(pbx_id, 0))
        replies = list(self.world.pool.map(self.post, bodies))
        ok = [r.json()["data"] for r in replies if r.status_code == 200]
        for body, reply in zip(bodies, replies, strict=True):
            if reply.status_code == 503:
                # A write that lost a race is refused whole, to be retried.
                self.expect(
                    reply.json()["error"]["code"] == "conflict" and "Retry-After" in reply.headers,
                    f"503 without conflict/Retry-After: {reply.text}",
                )
                continue
            allowed = (
                {200, 409}
                if body["action"] == "create_call" or pbx_id in self.call_of
                else {200, 404, 409}
            )
            self.expect(
                reply.status_code in allowed,
                f"concurrent {body}: {reply.status_code} {reply.text[:200]}",
            )
        self.expect(len({d["call_id"] for d in ok}) <= 1, f"one pbx id, several calls: {ok}")
        self.expect(len({d["ticket_id"] for d in ok}) <= 1, f"one pbx id, several tickets: {ok}")
        finals = {d["call_status"] for d in ok if d["call_status"] in FINAL}
        self.expect(len(finals) <= 1, f"several final statuses confirmed for {pbx_id}: {finals}")
        stored = {c.pbx_call_id: c for c in self.mine()}
        if pbx_id in stored:
            call = stored[pbx_id]
            state = STATUS_OF[call.state]
            confirmed = {d["call_status"] for d in ok} | ({before} if before else set())
            self.expect(state in confirmed, f"{pbx_id} is {state}, confirmed were {confirmed}")
            if finals:
                self.expect(state in finals, f"{pbx_id} is {state}, final confirmed {finals}")
            if ok:
                self.expect(
                    ok[0]["call_id"] == call.call_id, f"{pbx_id}: replies name another call"
                )
            self.call_of.setdefault(pbx_id, call.call_id)
            self.status[call.call_id] = state
            if state in FINAL:
                first = self.final.setdefault(call.call_id, state)
                self.expect(first == state, f"call {call.call_id} left final {first} for {state}")
        else:
            self.expect(not ok, f"{pbx_id} confirmed but not stored")

    # --- invariants ----------------------------------------------------------------

    @invariant()
    def one_call_and_ticket_per_pbx_id(self) -> None:
        self.world.tally.steps += 1
        calls = self.mine()
        by_pbx: dict[str, list[int]] = {}
        for call in calls:
            by_pbx.setdefault(call.pbx_call_id, []).append(call.call_id)
        for pbx_id, ids in by_pbx.items():
            self.expect(len(ids) == 1, f"{pbx_id} has calls {ids}")
        self.expect(len({c.call_id for c in calls}) == len(calls), "call ids repeat")
        tickets = [c.ticket.ticket_id for c in calls]
        self.expect(len(set(tickets)) == len(tickets), f"ticket ids repeat: {sorted(tickets)}")
        for pbx_id, call_id in self.call_of.items():
            self.expect(
                by_pbx.get(pbx_id) == [call_id],
                f"{pbx_id}: stored {by_pbx.get(pbx_id)}, replied {call_id}",
            )
        for call in calls:
            state = STATUS_OF[call.state]
            self.expect(
                self.status.get(call.call_id, state) == state,
                f"call {call.call_id} is {state}, last reply said {self.status.get(call.call_id)}",
            )
            if call.call_id in self.final:
                self.expect(
                    state == self.final[call.call_id], f"call {call.call_id} left final status"
                )

    @invariant()
    def cards_match_the_audience_of_active_calls(self) -> None:
        self.check_cards()

    def check_cards(self) -> None:
        calls = self.mine()
        expected = {e: {c.call_id for c in calls if e in viewers(c)} for e in WATCHED}
        deadline = time.monotonic() + SETTLE
        while True:
            seen = {e: view.snapshot() for e, view in self.world.views.items()}
            if seen == expected:
                return
            if time.monotonic() > deadline:
                raise self.broken(f"cards seen {seen}, expected {expected}")
            time.sleep(0.01)

    def teardown(self) -> None:
        # End this sequence's active calls, so that the next one starts with no cards.
        for call in self.mine():
            if STATUS_OF[call.state] in ACTIVE:
                self.world.http.post(
                    self.world.stack.calls_url,
                    json={
                        "action": "update_call",
                        "call_id": call.call_id,
                        "call_status": "canceled",
                    },
                )


def test_random_call_lifecycles_keep_every_invariant(world: World) -> None:
    CallLifecycle.world = world
    started_at = time.monotonic()
    try:
        run_state_machine_as_test(
            CallLifecycle,
            settings=settings(
                max_examples=40,
                stateful_step_count=20,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        tally = world.tally
        print(
            f"\nsequences run: {tally.sequences}; steps: {tally.steps}; "
            f"requests: {tally.requests} {dict(sorted(tally.statuses.items()))}; "
            f"invariants broken: {len(tally.broken)}; {time.monotonic() - started_at:.1f} s"
        )
        for message in tally.broken:
            print(f"- {message}")
    for view in world.views.values():
        assert view.error is None, view.error
    assert tally.broken == []
    assert 500 not in tally.statuses
