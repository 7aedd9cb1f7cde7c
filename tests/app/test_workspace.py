"""The helpdesk workspace's use cases on every adapter: callbacks opened and resolved with the
calls that cause them (in the same unit of work), listed and marked in each token's scope; the
supervisor board's calls, employee states and figures against posted calls; the demo seed's
calls."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mongomock
import pytest

from core.app import UseCases
from core.app.admin import ChannelRef
from core.app.audit import AuditFilter
from core.app.callbacks import CallbackPage
from core.app.queries import CallFilter
from core.app.seed import apply_seed, load_seed
from core.auth import Principal, Role
from core.domain import (
    UNANSWERED_STATUSES,
    CallbackState,
    CreateCall,
    Direction,
    ExpiryPolicy,
    Presence,
    Resolution,
    Status,
    UpdateCall,
)
from core.errors import InvalidRequest, NotFound, PermissionDenied
from core.model import CallbackQuery, CallView
from core.recordings import FileBlobStore
from core.recordings.library import RecordingLibrary
from core.storage.mongo import MongoStore
from core.storage.port import Store
from core.storage.sqlite import SqliteStore
from tests.app.test_call_atomicity import FaultyStore, InjectedFault

SEEDS = Path(__file__).resolve().parents[2] / "seed"
DEMO = ChannelRef(key="demo-channel-key")
PHONE = "+7 812 555-01-01"
SAME_PHONE = "8 (812) 555-01-01"
OTHER_PHONE = "+7 812 555-09-09"
# 10:00 in Moscow.
T0 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)

ANNA = Principal("tok_anna", Role.EMPLOYEE, 1)
BORIS = Principal("tok_boris", Role.EMPLOYEE, 2)
VERA = Principal("tok_vera", Role.EMPLOYEE, 3)
SUPERVISOR = Principal("tok_super", Role.SUPERVISOR)
ADMIN = Principal("tok_admin", Role.ADMIN)
OPEN = CallbackQuery()
RESOLVED = CallbackQuery(states=frozenset({CallbackState.RESOLVED}))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture(params=["sqlite", "mongomock"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FaultyStore]:
    inner: Store
    if request.param == "sqlite":
        inner = SqliteStore(tmp_path / "vats.db", FileBlobStore(tmp_path))
    else:
        client: Any = mongomock.MongoClient(tz_aware=True)
        inner = MongoStore(client["vats"], blobs=FileBlobStore(tmp_path))
    inner.prepare()
    try:
        yield FaultyStore(inner)
    finally:
        inner.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def use_cases(store: Any, clock: Callable[[], datetime]) -> UseCases:
    library = RecordingLibrary(store, max_bytes=1 << 20)
    return UseCases.over(
        store, region="RU", timezone="Europe/Moscow", recordings=library, clock=clock
    )


@pytest.fixture
def app(store: FaultyStore, clock: Clock) -> UseCases:
    app = use_cases(store, clock)
    apply_seed(app, load_seed(SEEDS / "demo.json"), clock=clock)
    return app


def post(
    app: UseCases,
    direction: Direction,
    phone: str,
    *statuses: Status,
    clock: Clock | None = None,
    **fields: Any,
) -> CallView:
    """A call created ringing (or in its first status) and taken through the rest, each
    status a minute after the one before when a clock is given."""
    first, *rest = statuses or (Status.RINGING,)
    view, _ = app.calls.create_call(
        DEMO, CreateCall(direction=direction, phone=phone, status=first, **fields)
    )
    for status in rest:
        if clock is not None:
            clock.tick(60)
        view = app.calls.update_call(DEMO, UpdateCall(status=status, call_id=view.call_id))
    return view


def missed(app: UseCases, phone: str = PHONE, **fields: Any) -> CallView:
    return post(app, Direction.INCOMING, phone, Status.RINGING, Status.MISSED, **fields)


def only_open(app: UseCases, principal: Principal = SUPERVISOR) -> CallbackPage:
    return app.callbacks.list(principal, OPEN)


# --- opening and resolving -------------------------------------------------------------------


def test_missed_calls_from_one_number_make_one_callback_counting_attempts(
    app: UseCases, clock: Clock
) -> None:
    first = missed(app, clock=clock)
    clock.tick(600)
    last = post(
        app, Direction.INCOMING, SAME_PHONE, Status.RINGING, Status.BUSY, clock=clock, user_ids=(3,)
    )
    other = missed(app, OTHER_PHONE, clock=clock)
    page = only_open(app)
    assert page.open_count == 2 and page.next_page_token == ""
    callback, other_callback = (v.callback for v in page.callbacks)
    assert callback.attempts == 2
    assert callback.first_missed_at == first.call.ended_at
    assert callback.last_missed_at == last.call.ended_at
    assert (callback.last_call_id, callback.last_status) == (last.call_id, Status.BUSY)
    assert (callback.phone, page.callbacks[0].phone_display) == (SAME_PHONE, "+7 812 555-01-01")
    assert callback.audience == (1, 2, 3)
    assert page.callbacks[0].channel_name == "+7 495 000-00-00"
    assert other_callback.last_call_id == other.call_id and other_callback.attempts == 1


@pytest.mark.parametrize("status", sorted(UNANSWERED_STATUSES))
def test_each_unanswered_ending_opens_a_callback(app: UseCases, status: Status) -> None:
    post(app, Direction.INCOMING, PHONE, Status.RINGING, status)
    assert [v.callback.last_status for v in only_open(app).callbacks] == [status]


def test_calls_that_got_through_or_went_out_open_none(app: UseCases) -> None:
    post(app, Direction.INCOMING, PHONE, Status.RINGING, Status.IN_PROGRESS, Status.FAILED)
    post(app, Direction.INCOMING, PHONE, Status.ANSWERED)
    post(app, Direction.OUTGOING, PHONE, Status.RINGING, Status.MISSED)
    assert only_open(app).callbacks == []


def test_a_repeated_final_status_counts_no_second_attempt(app: UseCases) -> None:
    view = missed(app)
    app.calls.update_call(DEMO, UpdateCall(status=Status.MISSED, call_id=view.call_id))
    assert [v.callback.attempts for v in only_open(app).callbacks] == [1]


@pytest.mark.parametrize("direction", list(Direction))
@pytest.mark.parametrize("status", [Status.IN_PROGRESS, Status.ANSWERED])
def test_a_later_call_with_the_number_answered_resolves_it(
    app: UseCases, clock: Clock, direction: Direction, status: Status
) -> None:
    missed(app)
    clock.tick(300)
    back = post(app, direction, SAME_PHONE, Status.RINGING, clock=clock, user_ids=(2,))
    assert only_open(app).open_count == 1  # ringing is not answered yet
    clock.tick(30)
    app.calls.update_call(DEMO, UpdateCall(status=status, call_id=back.call_id))
    assert only_open(app).callbacks == []
    [view] = app.callbacks.list(SUPERVISOR, RESOLVED).callbacks
    callback = view.callback
    assert (callback.resolution, callback.resolved_by_call_id) == (
        Resolution.ANSWERED,
        back.call_id,
    )
    assert (callback.resolved_by_employee_id, view.resolved_by_name) == (2, "Boris Ivanov")
    assert callback.resolved_at == clock.now


def test_another_number_or_another_channel_leaves_it_open(app: UseCases) -> None:
    missed(app)
    post(app, Direction.OUTGOING, OTHER_PHONE, Status.ANSWERED)
    channel, _ = app.channels.create("Second line", 1)
    app.calls.create_call(
        ChannelRef(channel_id=channel.channel_id),
        CreateCall(direction=Direction.OUTGOING, phone=PHONE, status=Status.ANSWERED),
    )
    assert only_open(app).open_count == 1


def test_a_new_miss_after_a_resolution_opens_a_new_callback(app: UseCases) -> None:
    missed(app)
    post(app, Direction.OUTGOING, PHONE, Status.ANSWERED)
    again = missed(app)
    page = app.callbacks.list(SUPERVISOR, CallbackQuery(states=frozenset(CallbackState)))
    assert [(v.callback.state, v.callback.attempts) for v in page.callbacks] == [
        (CallbackState.OPEN, 1),
        (CallbackState.RESOLVED, 1),
    ]
    assert page.callbacks[0].callback.last_call_id == again.call_id


def test_a_call_change_failing_at_its_callback_write_changes_nothing(
    app: UseCases, store: FaultyStore
) -> None:
    ringing = post(app, Direction.INCOMING, PHONE)
    store.fault = ("callbacks", "add")
    with pytest.raises(InjectedFault):
        app.calls.update_call(DEMO, UpdateCall(status=Status.MISSED, call_id=ringing.call_id))
    assert app.queries.get_call(ADMIN, ringing.call_id).call.status is Status.RINGING
    assert only_open(app).callbacks == []
    missed(app, OTHER_PHONE)
    back = post(app, Direction.OUTGOING, OTHER_PHONE)
    store.fault = ("callbacks", "save")
    with pytest.raises(InjectedFault):
        app.calls.update_call(DEMO, UpdateCall(status=Status.IN_PROGRESS, call_id=back.call_id))
    assert app.queries.get_call(ADMIN, back.call_id).call.status is Status.RINGING
    assert only_open(app).open_count == 1


# --- listing and marking ---------------------------------------------------------------------


def test_an_employee_sees_the_callbacks_of_calls_it_could_see(app: UseCases) -> None:
    for_anna = missed(app, PHONE, user_ids=(1,))
    for_boris = missed(app, OTHER_PHONE, user_ids=(2,))
    # Anna could see this later miss of Boris's number: she sees its callback too.
    missed(app, OTHER_PHONE, group_ids=(10,))

    def listed(principal: Principal) -> list[int]:
        return [v.callback.last_call_id for v in only_open(principal=principal, app=app).callbacks]

    assert listed(ANNA) == [for_anna.call_id, for_boris.call_id + 1]
    assert listed(BORIS) == [for_boris.call_id + 1]
    assert listed(VERA) == []
    assert only_open(app, VERA).open_count == 0 and only_open(app, ANNA).open_count == 2
    assert len(only_open(app, SUPERVISOR).callbacks) == len(only_open(app, ADMIN).callbacks) == 2


def test_marking_keeps_who_and_when_and_the_first_resolution(app: UseCases, clock: Clock) -> None:
    missed(app, user_ids=(1,))
    [view] = only_open(app).callbacks
    callback_id = view.callback.callback_id
    marked_at = clock.tick(120)
    marked = app.callbacks.mark_called_back(ANNA, callback_id)
    assert marked.callback.state is CallbackState.RESOLVED
    assert marked.callback.resolution is Resolution.CALLED_BACK
    assert (marked.callback.resolved_by_employee_id, marked.resolved_by_name) == (1, "Anna Petrova")
    assert (marked.callback.resolved_at, marked.callback.resolved_by_token_id) == (
        marked_at,
        ANNA.token_id,
    )
    clock.tick(60)
    again = app.callbacks.mark_called_back(SUPERVISOR, callback_id, employee_id=3)
    assert again.callback == marked.callback
    assert only_open(app).callbacks == []
    assert [v.callback.callback_id for v in app.callbacks.list(ANNA, RESOLVED).callbacks] == [
        callback_id
    ]


def test_who_may_mark_what(app: UseCases) -> None:
    missed(app, user_ids=(1,))
    [view] = only_open(app).callbacks
    callback_id = view.callback.callback_id
    with pytest.raises(NotFound):
        app.callbacks.mark_called_back(BORIS, callback_id)
    with pytest.raises(NotFound):
        app.callbacks.mark_called_back(SUPERVISOR, callback_id + 100)
    with pytest.raises(PermissionDenied):
        app.callbacks.mark_called_back(ANNA, callback_id, employee_id=2)
    with pytest.raises(InvalidRequest):
        app.callbacks.mark_called_back(SUPERVISOR, callback_id, employee_id=99)
    assert only_open(app).open_count == 1
    marked = app.callbacks.mark_called_back(SUPERVISOR, callback_id, employee_id=2)
    assert marked.callback.resolved_by_employee_id == 2
    assert marked.callback.resolved_by_token_id == SUPERVISOR.token_id


def test_a_supervisor_may_mark_without_naming_anyone(app: UseCases) -> None:
    missed(app)
    [view] = only_open(app).callbacks
    marked = app.callbacks.mark_called_back(SUPERVISOR, view.callback.callback_id)
    assert marked.callback.resolved_by_employee_id is None and marked.resolved_by_name == ""


def test_pages_walk_the_list_in_order(app: UseCases, clock: Clock) -> None:
    calls = []
    for n in range(5):
        calls.append(missed(app, f"+7 812 555-02-0{n}").call_id)
        clock.tick(60)
    seen: list[int] = []
    token = ""
    while True:
        page = app.callbacks.list(SUPERVISOR, OPEN, page_size=2, page_token=token)
        assert page.open_count == 5
        seen += [v.callback.last_call_id for v in page.callbacks]
        token = page.next_page_token
        if not token:
            break
    assert seen == calls
    with pytest.raises(InvalidRequest):
        app.callbacks.list(SUPERVISOR, OPEN, page_token="not-a-token")
    with pytest.raises(InvalidRequest):
        app.callbacks.list(SUPERVISOR, OPEN, page_size=-1)


def test_listing_and_marking_are_audited(app: UseCases) -> None:
    missed(app)
    [view] = only_open(app, SUPERVISOR).callbacks
    app.callbacks.mark_called_back(SUPERVISOR, view.callback.callback_id)
    entries, _ = app.audit.list_entries(ADMIN, AuditFilter(), 50, "")
    actions = [e.action for e in entries if e.token_id == SUPERVISOR.token_id]
    assert actions == ["callback.marked", "callbacks.listed"]


# --- the board ---------------------------------------------------------------------------


def test_the_board_shows_live_calls_states_and_todays_figures(app: UseCases, clock: Clock) -> None:
    # Yesterday's calls count for nothing today.
    clock.now = T0 - timedelta(days=1)
    missed(app, "+7 812 555-03-03")
    clock.now = T0
    answered = post(app, Direction.INCOMING, PHONE, Status.RINGING, user_ids=(1,))
    clock.tick(20)
    app.calls.update_call(DEMO, UpdateCall(status=Status.IN_PROGRESS, call_id=answered.call_id))
    clock.tick(100)
    app.calls.update_call(DEMO, UpdateCall(status=Status.ANSWERED, call_id=answered.call_id))
    missed(app, OTHER_PHONE, clock=clock)
    talking = post(app, Direction.OUTGOING, "+7 903 555-12-34", Status.RINGING, user_ids=(2,))
    clock.tick(10)
    app.calls.update_call(DEMO, UpdateCall(status=Status.IN_PROGRESS, call_id=talking.call_id))
    ringing = post(app, Direction.INCOMING, "+7 903 555-00-00", Status.RINGING, group_ids=(10,))
    clock.tick(40)

    board = app.board.snapshot()
    assert (board.day.day.isoformat(), board.day.timezone, board.at) == (
        "2026-03-02",
        "Europe/Moscow",
        clock.now,
    )
    assert [c.view.call_id for c in board.calls] == [talking.call_id, ringing.call_id]
    on_call, rings = board.calls
    assert on_call.audience == ((2, "Boris Ivanov"),) and on_call.view.user_name == "Boris Ivanov"
    assert rings.audience == ((1, "Anna Petrova"), (2, "Boris Ivanov"))
    assert rings.phone_display == "+7 903 555-00-00"
    assert [(e.employee_id, e.presence, e.call_id) for e in board.employees] == [
        (1, Presence.RINGING, ringing.call_id),
        (2, Presence.ON_CALL, talking.call_id),
        (3, Presence.FREE, None),
    ]
    [line] = board.channels
    figures = line.figures
    assert (line.channel_name, line.open_callbacks) == ("+7 495 000-00-00", 2)
    assert (figures.incoming, figures.answered, figures.missed) == (3, 1, 1)
    assert figures.answer_rate == pytest.approx(1 / 3)
    assert figures.average_wait == timedelta(seconds=20)
    assert figures.average_talk == timedelta(seconds=100)


def test_the_board_day_turns_at_midnight_in_its_time_zone(app: UseCases, clock: Clock) -> None:
    # 23:59 in Moscow.
    clock.now = datetime(2026, 3, 2, 20, 59, tzinfo=UTC)
    missed(app)
    assert app.board.snapshot().channels[0].figures.incoming == 1
    clock.now = datetime(2026, 3, 2, 21, 0, tzinfo=UTC)
    board = app.board.snapshot()
    assert board.day.day.isoformat() == "2026-03-03"
    assert (board.channels[0].figures.incoming, board.channels[0].open_callbacks) == (0, 1)


def test_an_expired_call_leaves_the_board(app: UseCases, clock: Clock) -> None:
    post(app, Direction.INCOMING, PHONE, user_ids=(1,))
    clock.tick(3600)
    assert app.cards.expire_stale_calls(ExpiryPolicy()) == 1
    board = app.board.snapshot()
    assert board.calls == [] and board.employees[0].presence is Presence.FREE


# --- the demo seed -------------------------------------------------------------------------


def test_the_demo_calls_are_seeded_once_with_a_playable_recording(
    store: FaultyStore, clock: Clock
) -> None:
    app = use_cases(store, clock)
    library = RecordingLibrary(store, max_bytes=1 << 20)
    seed = load_seed(SEEDS / "demo-with-calls.json")
    assert seed["tokens"] == load_seed(SEEDS / "demo.json")["tokens"]
    apply_seed(app, seed, library, clock=clock)
    clock.tick(3600)
    apply_seed(app, seed, library, clock=clock)
    calls, _ = app.queries.list_calls(ADMIN, CallFilter(), 50, "")
    assert sorted(v.call.pbx_call_id or "" for v in calls) == sorted(
        str(c["pbx_call_id"]) for c in seed["calls"]
    )
    answered = next(v for v in calls if v.call.pbx_call_id == "demo-answered")
    assert answered.call.status is Status.ANSWERED and answered.user_name == "Anna Petrova"
    assert answered.call.talk_duration == timedelta(seconds=192)
    [recording] = answered.recordings
    assert (recording.format, recording.content_type) == ("wav", "audio/wav")
    assert recording.duration_seconds == pytest.approx(1.5)
    reader = library.open_reader(recording.recording_id, 0, 0)
    try:
        data = b"".join(reader)
    finally:
        reader.close()
    assert len(data) == recording.size and data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    page = only_open(app)
    assert sorted((v.phone_display, v.callback.attempts) for v in page.callbacks) == [
        ("+7 812 555-01-02", 2),
        ("777777777", 1),
    ]
    assert any(v.call.direction is Direction.OUTGOING for v in calls)


def test_a_seed_that_includes_itself_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"include": ["b.json"]}', encoding="utf-8")
    (tmp_path / "b.json").write_text('{"include": ["a.json"]}', encoding="utf-8")
    with pytest.raises(ValueError, match="includes itself"):
        load_seed(tmp_path / "a.json")
