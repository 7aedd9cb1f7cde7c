"""Real SIP calls through Kamailio and the connector drive the bridge end to end.

Each scenario places a call between baresip phones, then checks what the
bridge recorded (gRPC GetCall with the admin token: statuses, history, who
the call is bound to) and which employee's card stream showed and hid the
card. Each one prints the statuses the bridge recorded and how long after the
phone saw the SIP event the card event arrived (`pytest -s` shows them).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest

from telephony.v1 import call_pb2, call_service_pb2, call_service_pb2_grpc
from tests.conftest import LiveStack, bearer
from tests.e2e.sse import SSEvent
from vocabulary import ACTIVE_STATUSES, STATUS

from .conftest import CUSTOMER, GROUP, RING_TIMEOUT, TimedSSEReader, received_at
from .phones import Phone, PhoneEvent, wav_info

pytestmark = pytest.mark.sip

State = call_pb2.Call.State
ANNA, BORIS, VERA = 1, 2, 3
# How long the answered calls talk: long enough to tell a recording's length apart from zero.
TALK_SECONDS = 2.0


@dataclass
class Measured:
    scenario: str
    statuses: list[str] = field(default_factory=list)
    # (card event, seconds from the phone's ctrl_tcp event to the card's arrival)
    delays: list[tuple[str, float]] = field(default_factory=list)
    note: str = ""

    def delay(self, label: str, sip_event: PhoneEvent, card: Card) -> None:
        self.delays.append((label, received_at(card.event) - sip_event.at))

    def line(self) -> str:
        delays = ", ".join(f"{label} {seconds * 1000:.0f} ms" for label, seconds in self.delays)
        line = f"SIP {self.scenario}: {' -> '.join(self.statuses)}; card after SIP event: {delays}"
        return f"{line}; {self.note}" if self.note else line


RUN: list[Measured] = []


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    yield
    delays = sorted((seconds, m.scenario, label) for m in RUN for label, seconds in m.delays)
    if delays:
        median = statistics.median(seconds for seconds, _, _ in delays)
        slowest, scenario, label = delays[-1]
        print(
            f"\nSIP card delay over {len(delays)} card events: p50 {median * 1000:.0f} ms, "
            f"max {slowest * 1000:.0f} ms ({scenario}: {label})"
        )


@pytest.fixture
def measured(request: pytest.FixtureRequest) -> Iterator[Measured]:
    result = Measured(request.node.name.removeprefix("test_"))
    yield result
    RUN.append(result)
    print("\n" + result.line())


@pytest.fixture(scope="module")
def calls(live_stack: LiveStack) -> Iterator[call_service_pb2_grpc.CallServiceStub]:
    with grpc.insecure_channel(live_stack.grpc_target) as channel:
        yield call_service_pb2_grpc.CallServiceStub(channel)


def get_call(
    stub: call_service_pb2_grpc.CallServiceStub,
    call_id: int,
    until: Callable[[call_pb2.Call], bool] = lambda call: True,
    timeout: float = 12,
) -> call_pb2.Call:
    """The call once `until` holds: the connector's last update may trail the card."""
    deadline = time.monotonic() + timeout
    while True:
        call = stub.GetCall(
            call_service_pb2.GetCallRequest(call_id=call_id),
            metadata=bearer(LiveStack.admin_token),
            timeout=5,
        ).call
        if until(call) or time.monotonic() > deadline:
            return call
        time.sleep(0.1)


def history(call: call_pb2.Call) -> list[str]:
    """The statuses the bridge recorded, after checking their times add up."""
    times = [change.time.ToDatetime() for change in call.status_history]
    assert times == sorted(times), times
    assert call.HasField("end_time") and call.end_time.ToDatetime() == times[-1]
    answered = call.state == State.STATE_ANSWERED
    assert call.HasField("answer_time") == answered
    if answered:
        assert call.answer_time.ToDatetime() == times[1]
    return [STATUS.name(change.state) or "" for change in call.status_history]


@dataclass
class Card:
    event: SSEvent

    def __getitem__(self, key: str) -> Any:
        return self.event.json[key]

    @property
    def call_id(self) -> int:
        return int(self["call_id"])


def card(reader: TimedSSEReader, event: str, timeout: float = 10) -> Card:
    """The reader's next card event, which must be `event`."""
    got = reader.next(timeout)
    assert got.event == event, (got.event, got.data)
    return Card(got)


def nothing_for(readers: dict[int, TimedSSEReader], *employees: int) -> None:
    for employee in employees:
        reader = readers[employee]
        assert reader.nothing_more(0.2), [(e.event, e.data) for e in list(reader.events.queue)]


def ended(call: call_pb2.Call) -> bool:
    return STATUS.name(call.state) not in ACTIVE_STATUSES


def test_answered_incoming_call(
    idle_phones: dict[str, Phone],
    cards: dict[int, TimedSSEReader],
    calls: call_service_pb2_grpc.CallServiceStub,
    live_stack: LiveStack,
    measured: Measured,
) -> None:
    customer, anna = idle_phones[CUSTOMER], idle_phones["101"]
    customer.dial("101")
    ringing = anna.wait_for("CALL_INCOMING")
    sip_call_id = ringing.call_id
    shown = card(cards[ANNA], "show")
    measured.delay("show", ringing, shown)
    assert shown["pbx_call_id"] == sip_call_id
    assert (shown["direction"], shown["phone"], shown["call_status"]) == (
        "incoming",
        CUSTOMER,
        "ringing",
    )
    # Anna is the only employee the call rings for, so it is hers from the start.
    assert shown["user_id"] == ANNA

    anna.answer()
    # The caller's phone sees the 200 OK as Kamailio relays it; the callee's waits for the ACK.
    answered = customer.wait_for("CALL_ESTABLISHED", call_id=sip_call_id)
    established = anna.wait_for("CALL_ESTABLISHED", call_id=sip_call_id)
    updated = card(cards[ANNA], "update")
    measured.delay("update", answered, updated)
    assert (updated["call_status"], updated["user_id"]) == ("in-progress", ANNA)

    time.sleep(TALK_SECONDS)
    customer.hangup()
    closed = anna.wait_for("CALL_CLOSED", call_id=sip_call_id)
    hidden = card(cards[ANNA], "hide")
    measured.delay("hide", closed, hidden)
    assert (hidden["call_status"], hidden["reason"]) == ("answered", "final")
    nothing_for(cards, BORIS, VERA)

    call = get_call(calls, shown.call_id, until=lambda c: c.HasField("recording"))
    measured.statuses = history(call)
    assert measured.statuses == ["ringing", "in-progress", "answered"]
    assert call.pbx_call_id == sip_call_id
    assert call.direction == call_pb2.DIRECTION_INCOMING and call.phone == CUSTOMER
    assert call.user_id == ANNA and call.pbx_user_id == "101"
    assert call.ticket.executor_employee_id == ANNA
    assert call.talk_duration.ToTimedelta().total_seconds() >= TALK_SECONDS * 0.5

    # The answering phone's recording, posted by the connector with the final update.
    assert call.HasField("recording"), "no recording attached"
    assert call.recording.format == call_pb2.Recording.FORMAT_WAV
    download = httpx.get(live_stack.http_url + call.recording.signed_path, timeout=10)
    assert download.status_code == 200, download.text
    wav = wav_info(download.content)
    talked = closed.at - established.at
    bridge_talk = call.talk_duration.ToTimedelta().total_seconds()
    measured.note = (
        f"talked {talked:.2f} s by the phones, {bridge_talk:.2f} s by the bridge, "
        f"recording {wav.seconds:.2f} s"
    )
    assert wav.rate == 8000
    assert abs(wav.seconds - talked) < max(1.0, talked * 0.35), (wav.seconds, talked)
    assert download.content == anna.recording(sip_call_id).read_bytes()


def test_answered_outgoing_call(
    idle_phones: dict[str, Phone],
    cards: dict[int, TimedSSEReader],
    calls: call_service_pb2_grpc.CallServiceStub,
    live_stack: LiveStack,
    measured: Measured,
) -> None:
    boris, customer = idle_phones["102"], idle_phones[CUSTOMER]
    boris.dial(CUSTOMER)
    ringing = customer.wait_for("CALL_INCOMING")
    sip_call_id = ringing.call_id
    shown = card(cards[BORIS], "show")
    measured.delay("show", ringing, shown)
    assert shown["pbx_call_id"] == sip_call_id
    assert (shown["direction"], shown["phone"], shown["call_status"], shown["user_id"]) == (
        "outgoing",
        CUSTOMER,
        "ringing",
        BORIS,
    )

    customer.answer()
    established = boris.wait_for("CALL_ESTABLISHED", call_id=sip_call_id)
    updated = card(cards[BORIS], "update")
    measured.delay("update", established, updated)
    assert (updated["call_status"], updated["user_id"]) == ("in-progress", BORIS)

    time.sleep(1)
    boris.hangup()
    closed = customer.wait_for("CALL_CLOSED", call_id=sip_call_id)
    hidden = card(cards[BORIS], "hide")
    measured.delay("hide", closed, hidden)
    assert (hidden["call_status"], hidden["reason"]) == ("answered", "final")
    nothing_for(cards, ANNA, VERA)

    call = get_call(calls, shown.call_id, until=lambda c: c.HasField("recording"))
    measured.statuses = history(call)
    assert measured.statuses == ["ringing", "in-progress", "answered"]
    assert call.direction == call_pb2.DIRECTION_OUTGOING and call.phone == CUSTOMER
    assert call.user_id == BORIS and call.pbx_call_id == sip_call_id
    # The employee's phone records here too: what Boris heard.
    assert call.HasField("recording"), "no recording attached"
    download = httpx.get(live_stack.http_url + call.recording.signed_path, timeout=10)
    assert download.content == boris.recording(sip_call_id).read_bytes()


def test_callee_busy(
    idle_phones: dict[str, Phone],
    cards: dict[int, TimedSSEReader],
    calls: call_service_pb2_grpc.CallServiceStub,
    measured: Measured,
) -> None:
    customer, vera = idle_phones[CUSTOMER], idle_phones["103"]
    customer.dial("103")
    ringing = vera.wait_for("CALL_INCOMING")
    shown = card(cards[VERA], "show")
    measured.delay("show", ringing, shown)
    # baresip rejects a ringing call it hangs up with 486 Busy Here.
    vera.hangup()
    rejected = customer.wait_for("CALL_CLOSED", call_id=ringing.call_id)
    assert rejected.param.startswith("486")
    hidden = card(cards[VERA], "hide")
    measured.delay("hide", rejected, hidden)
    assert (hidden["call_status"], hidden["reason"]) == ("busy", "final")
    nothing_for(cards, ANNA, BORIS)

    call = get_call(calls, shown.call_id, until=ended)
    measured.statuses = history(call)
    assert measured.statuses == ["ringing", "busy"]
    assert call.pbx_call_id == ringing.call_id and not call.HasField("answer_time")


def test_caller_hangs_up_while_ringing(
    idle_phones: dict[str, Phone],
    cards: dict[int, TimedSSEReader],
    calls: call_service_pb2_grpc.CallServiceStub,
    measured: Measured,
) -> None:
    customer, anna = idle_phones[CUSTOMER], idle_phones["101"]
    customer.dial("101")
    ringing = anna.wait_for("CALL_INCOMING")
    shown = card(cards[ANNA], "show")
    measured.delay("show", ringing, shown)
    customer.hangup()
    canceled = anna.wait_for("CALL_CLOSED", call_id=ringing.call_id)
    hidden = card(cards[ANNA], "hide")
    measured.delay("hide", canceled, hidden)
    # An incoming call the customer gave up on is one the helpdesk missed.
    assert (hidden["call_status"], hidden["reason"]) == ("missed", "final")
    nothing_for(cards, BORIS, VERA)

    call = get_call(calls, shown.call_id, until=ended)
    measured.statuses = history(call)
    assert measured.statuses == ["ringing", "missed"]


def test_employee_hangs_up_while_ringing(
    idle_phones: dict[str, Phone],
    cards: dict[int, TimedSSEReader],
    calls: call_service_pb2_grpc.CallServiceStub,
    measured: Measured,
) -> None:
    vera, customer = idle_phones["103"], idle_phones[CUSTOMER]
    vera.dial(CUSTOMER)
    ringing = customer.wait_for("CALL_INCOMING")
    shown = card(cards[VERA], "show")
    measured.delay("show", ringing, shown)
    vera.hangup()
    canceled = customer.wait_for("CALL_CLOSED", call_id=ringing.call_id)
    hidden = card(cards[VERA], "hide")
    measured.delay("hide", canceled, hidden)
    assert (hidden["call_status"], hidden["reason"]) == ("canceled", "final")
    nothing_for(cards, ANNA, BORIS)

    call = get_call(calls, shown.call_id, until=ended)
    measured.statuses = history(call)
    assert measured.statuses == ["ringing", "canceled"]
    assert call.direction == call_pb2.DIRECTION_OUTGOING


def test_nobody_answers(
    idle_phones: dict[str, Phone],
    cards: dict[int, TimedSSEReader],
    calls: call_service_pb2_grpc.CallServiceStub,
    measured: Measured,
) -> None:
    customer, vera = idle_phones[CUSTOMER], idle_phones["103"]
    customer.dial("103")
    ringing = vera.wait_for("CALL_INCOMING")
    shown = card(cards[VERA], "show")
    measured.delay("show", ringing, shown)
    # Kamailio gives up after its ring timeout: CANCEL to the phone, 408 to the caller.
    given_up = customer.wait_for("CALL_CLOSED", call_id=ringing.call_id, timeout=RING_TIMEOUT + 6)
    vera.wait_for("CALL_CLOSED", call_id=ringing.call_id)
    waited = given_up.at - ringing.at
    assert RING_TIMEOUT - 1 <= waited <= RING_TIMEOUT + 5, waited
    hidden = card(cards[VERA], "hide")
    measured.delay("hide", given_up, hidden)
    assert (hidden["call_status"], hidden["reason"]) == ("missed", "final")
    nothing_for(cards, ANNA, BORIS)

    call = get_call(calls, shown.call_id, until=ended)
    measured.statuses = history(call)
    assert measured.statuses == ["ringing", "missed"]


def test_parallel_forking_card_stays_with_who_answered(
    idle_phones: dict[str, Phone],
    cards: dict[int, TimedSSEReader],
    calls: call_service_pb2_grpc.CallServiceStub,
    measured: Measured,
) -> None:
    customer, anna, boris = idle_phones[CUSTOMER], idle_phones["101"], idle_phones["102"]
    customer.dial(GROUP)
    rings = {phone.user: phone.wait_for("CALL_INCOMING") for phone in (anna, boris)}
    sip_call_id = rings["102"].call_id
    assert rings["101"].call_id == sip_call_id
    shown = {employee: card(cards[employee], "show") for employee in (ANNA, BORIS)}
    measured.delay("show", rings["101"], shown[ANNA])
    measured.delay("show", rings["102"], shown[BORIS])
    for employee in (ANNA, BORIS):
        assert shown[employee]["pbx_call_id"] == sip_call_id
        assert shown[employee]["call_status"] == "ringing"
        # Two employees ring, so nobody has the call yet.
        assert shown[employee]["user_id"] is None
    nothing_for(cards, VERA)

    boris.answer()
    answered = customer.wait_for("CALL_ESTABLISHED", call_id=sip_call_id)
    boris.wait_for("CALL_ESTABLISHED", call_id=sip_call_id)
    # Kamailio cancels the branch that lost.
    anna.wait_for("CALL_CLOSED", call_id=sip_call_id)
    kept = card(cards[BORIS], "update")
    measured.delay("update", answered, kept)
    assert (kept["call_status"], kept["user_id"]) == ("in-progress", BORIS)
    taken = card(cards[ANNA], "hide")
    measured.delay("hide-other", answered, taken)
    assert taken["reason"] == "assigned"

    time.sleep(1)
    customer.hangup()
    closed = boris.wait_for("CALL_CLOSED", call_id=sip_call_id)
    hidden = card(cards[BORIS], "hide")
    measured.delay("hide", closed, hidden)
    assert (hidden["call_status"], hidden["reason"]) == ("answered", "final")
    nothing_for(cards, ANNA, VERA)

    call = get_call(calls, shown[BORIS].call_id, until=ended)
    measured.statuses = history(call)
    assert measured.statuses == ["ringing", "in-progress", "answered"]
    assert call.user_id == BORIS and call.pbx_user_id == "102"
    assert sorted(call.audience_employee_ids) == [ANNA, BORIS]
