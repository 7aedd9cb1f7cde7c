"""A call command is one unit of work on every adapter: a failure between its
writes leaves nothing of it (no call, ticket, contact, event, idempotency
record or attached recording), and a retry then completes it once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import mongomock
import pytest

from core.app import UseCases
from core.app.admin import ChannelRef
from core.app.seed import apply_seed
from core.domain import CreateCall, Direction, Status, UpdateCall
from core.model import Recording, utc_now
from core.recordings import FileBlobStore
from core.recordings.library import RecordingLibrary
from core.storage.mongo import MongoStore
from core.storage.port import Store, UnitOfWork
from core.storage.sqlite import SqliteStore

SEED = Path(__file__).resolve().parents[2] / "seed" / "demo.json"
DEMO = ChannelRef(key="demo-channel-key")
NEW_PHONE = "+7 812 555-01-01"


class InjectedFault(Exception):
    """Stands for a crash or an error at one write of a use case."""


class _FailingRepository:
    """The real repository, except that one write method fails."""

    def __init__(self, inner: Any, method: str) -> None:
        self._inner = inner
        self._method = method

    def __getattr__(self, name: str) -> Any:
        if name == self._method:

            def fail(*args: Any, **kwargs: Any) -> None:
                raise InjectedFault(f"{name} failed")

            return fail
        return getattr(self._inner, name)


class _FaultyUnit:
    def __init__(self, inner: UnitOfWork, repository: str, method: str) -> None:
        self._inner = inner
        self._repository = repository
        self._method = method

    def __getattr__(self, name: str) -> Any:
        if name == self._repository:
            return _FailingRepository(getattr(self._inner, name), self._method)
        return getattr(self._inner, name)

    def __enter__(self) -> Self:
        self._inner.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._inner.__exit__(exc_type, exc, tb)


class FaultyStore:
    """A real store whose next write unit fails at one chosen write."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.fault: tuple[str, str] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def unit_of_work(self) -> UnitOfWork:
        unit = self._inner.unit_of_work()
        fault, self.fault = self.fault, None
        if fault is None:
            return unit
        return _FaultyUnit(unit, *fault)


def _sqlite(tmp_path: Path) -> Store:
    return SqliteStore(tmp_path / "vats.db", FileBlobStore(tmp_path))


def _mongomock(tmp_path: Path) -> Store:
    return MongoStore(mongomock.MongoClient(tz_aware=True)["vats"], blobs=FileBlobStore(tmp_path))


@pytest.fixture(params=[_sqlite, _mongomock], ids=["sqlite", "mongomock"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FaultyStore]:
    inner = request.param(tmp_path)
    inner.prepare()
    faulty = FaultyStore(inner)
    try:
        yield faulty
    finally:
        inner.close()


def use_cases(store: Any) -> UseCases:
    library = RecordingLibrary(store, max_bytes=1 << 20)
    app = UseCases.over(store, region="RU", timezone="Europe/Moscow", recordings=library)
    apply_seed(app, json.loads(SEED.read_text(encoding="utf-8")))
    return app


def snapshot(store: Store) -> dict[str, Any]:
    """Everything a create_call could have written, as the store keeps it."""
    with store.reading() as uow:
        return {
            "calls": uow.calls.count(),
            "contact": uow.contacts.by_key("+78125550101"),
            "last_seq": uow.events.last_seq(),
            "events": len(uow.events.after(0)),
            "idempotency": uow.idempotency.get(1, "key-1"),
            "recordings": {r: uow.recordings.get(r) for r in uow.recordings.ids()},
        }


def add_recording(store: Store) -> str:
    recording = Recording(
        recording_id="rec0001",
        channel_id=1,
        format="wav",
        content_type="audio/wav",
        size=44,
        sha256="0" * 64,
        created_at=utc_now(),
    )
    with store.unit_of_work() as uow:
        uow.recordings.add(recording)
        uow.commit()
    return recording.recording_id


CREATE_WRITES = [
    ("contacts", "add"),
    ("tickets", "add"),
    ("calls", "add"),
    ("recordings", "save"),
    ("events", "add"),
    ("idempotency", "add"),
]


@pytest.mark.parametrize(("repository", "method"), CREATE_WRITES)
def test_create_call_failing_at_any_write_leaves_nothing(
    store: FaultyStore, repository: str, method: str
) -> None:
    app = use_cases(store)
    recording_id = add_recording(store)
    before = snapshot(store)
    command = CreateCall(
        direction=Direction.INCOMING,
        phone=NEW_PHONE,
        pbx_call_id="pbx-1",
        user_ids=(1,),
        comment="first words",
        recording_id=recording_id,
    )
    store.fault = (repository, method)
    with pytest.raises(InjectedFault):
        app.calls.create_call(DEMO, command, idempotency_key="key-1")
    after = snapshot(store)
    # The request failed: its recording is removed, as for any failed request.
    assert after["recordings"] == {}
    del before["recordings"], after["recordings"]
    assert after == before


def test_create_call_completes_once_when_retried_after_a_failure(store: FaultyStore) -> None:
    app = use_cases(store)
    command = CreateCall(
        direction=Direction.INCOMING, phone=NEW_PHONE, pbx_call_id="pbx-1", comment="hello"
    )
    store.fault = ("events", "add")
    with pytest.raises(InjectedFault):
        app.calls.create_call(DEMO, command, idempotency_key="key-1")
    view, created = app.calls.create_call(DEMO, command, idempotency_key="key-1")
    replayed, replayed_created = app.calls.create_call(DEMO, command, idempotency_key="key-1")
    repeated, repeated_created = app.calls.create_call(DEMO, command)
    # The key replays the first reply as it was; the pbx_call_id alone finds the same call.
    assert (created, replayed_created, repeated_created) == (True, True, False)
    assert replayed == view
    assert repeated.call_id == view.call_id and repeated.ticket.ticket_id == view.ticket.ticket_id
    with store.reading() as uow:
        assert uow.calls.count() == 1
        stored = uow.calls.by_pbx_call_id(1, "pbx-1")
        assert stored is not None
        ticket = uow.tickets.get(stored.ticket_id)
        assert ticket is not None and [c.text for c in ticket.comments] == ["hello"]
        # The failed attempt logged nothing; the repeat is applied as an update.
        assert [e.kind for e in uow.events.after(0)] == ["created", "updated"]


@pytest.mark.parametrize(
    ("repository", "method"), [("calls", "save"), ("tickets", "save"), ("events", "add")]
)
def test_update_call_failing_at_any_write_changes_nothing(
    store: FaultyStore, repository: str, method: str
) -> None:
    app = use_cases(store)
    view, _ = app.calls.create_call(
        DEMO, CreateCall(direction=Direction.OUTGOING, phone=NEW_PHONE, user_ids=(1, 2))
    )
    update = UpdateCall(status=Status.ANSWERED, call_id=view.call_id, user_id=2, comment="done")
    store.fault = (repository, method)
    with pytest.raises(InjectedFault):
        app.calls.update_call(DEMO, update)
    with store.reading() as uow:
        call = uow.calls.get(view.call_id)
        ticket = uow.tickets.get(view.ticket.ticket_id)
        events = uow.events.after(0)
    assert call is not None and ticket is not None
    assert (call.status, call.user_id, call.version) == (Status.RINGING, None, view.call.version)
    assert (ticket.executor_id, ticket.comments) == (None, [])
    assert [e.kind for e in events] == ["created"]
