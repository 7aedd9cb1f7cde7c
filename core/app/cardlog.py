"""The card and event log: every change of a call becomes an event with a
deployment-wide seq; streams start from a snapshot or a replay of the log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from core import domain
from core.app import units
from core.model import CallView, PublishedEvent, utc_now
from core.storage.port import Store, UnitOfWork


def record_event(
    uow: UnitOfWork,
    kind: str,
    view: CallView,
    *,
    before: tuple[int, ...],
    card_changed: bool,
    at: datetime,
) -> None:
    """Log that a call changed, with what each employee's card does; part of the
    caller's unit of work, so the event exists exactly when the change does."""
    card_events = domain.card_events(before, view.call, card_changed)
    uow.events.add(kind, view, card_events, at)


class CardLog:
    def __init__(self, store: Store, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.clock = clock

    def last_seq(self) -> int:
        return units.read(self.store, lambda uow: uow.events.last_seq())

    def snapshot(self, employee_id: int) -> tuple[int, list[CallView]]:
        """The cards an employee sees now, and the seq they are current as of."""

        def work(uow: UnitOfWork) -> tuple[int, list[CallView]]:
            # The seq first: an event committed in between is then sent again, never missed.
            seq = uow.events.last_seq()
            return seq, [units.view_of(uow, c) for c in uow.calls.shown_to(employee_id)]

        return units.read(self.store, work)

    def card_events_after(self, employee_id: int, after_seq: int) -> list[PublishedEvent] | None:
        """The events an employee's card stream missed; None when the log no
        longer reaches back that far."""
        return units.read(
            self.store,
            lambda uow: (
                uow.events.after(after_seq, employee_id) if _reaches(uow, after_seq) else None
            ),
        )

    def call_events_after(self, after_seq: int) -> tuple[list[PublishedEvent] | None, int]:
        """The events after `after_seq` (None when the log no longer reaches back),
        and the last seq given out."""

        def work(uow: UnitOfWork) -> tuple[list[PublishedEvent] | None, int]:
            last = uow.events.last_seq()
            return (uow.events.after(after_seq) if _reaches(uow, after_seq) else None), last

        return units.read(self.store, work)

    def expire_stale_calls(self, policy: domain.ExpiryPolicy) -> int:
        """Hide the cards of active calls the PBX stopped reporting (reason
        `expired`); their status stays as the PBX left it."""
        now = self.clock()
        stale = units.read(
            self.store,
            lambda uow: [
                c.call_id
                for status, updated_before in policy.stale_before(now).items()
                for c in uow.calls.stale(status, updated_before)
            ],
        )
        return sum(self._expire(call_id, policy, now) for call_id in stale)

    def _expire(self, call_id: int, policy: domain.ExpiryPolicy, now: datetime) -> bool:
        def work(uow: UnitOfWork) -> bool:
            call = uow.calls.get(call_id)
            if call is None or not policy.is_expired(call, now):
                return False  # updated meanwhile: no longer stale
            before = call.viewers
            call.expire()
            uow.calls.save(call)
            view = units.view_of(uow, call)
            record_event(uow, "expired", view, before=before, card_changed=False, at=now)
            return True

        return units.write(self.store, work)


def _reaches(uow: UnitOfWork, after_seq: int) -> bool:
    last = uow.events.last_seq()
    if after_seq > last:
        # A seq this log never gave out: another deployment's, or a store started afresh.
        return False
    oldest = uow.events.oldest_seq()
    if oldest is None:
        return after_seq == last
    return oldest <= after_seq + 1
