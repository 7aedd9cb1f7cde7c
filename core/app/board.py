"""The supervisor board (SPEC 5a): every active call with whom it rings for or who has it,
each telephony employee's state, and today's figures per channel."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from core import domain
from core.app import units
from core.domain import Call, Day, Figures, Presence
from core.model import CallView, Channel, Employee, utc_now
from core.storage.port import Store, UnitOfWork


@dataclasses.dataclass(frozen=True)
class BoardCall:
    view: CallView
    # Who the card is shown to, by id and name, in the call's order.
    audience: tuple[tuple[int, str], ...]

    @property
    def phone_display(self) -> str:
        return domain.phone_display(self.view.call.phone, self.view.call.phone_e164)


@dataclasses.dataclass(frozen=True)
class EmployeeOnBoard:
    employee_id: int
    name: str
    presence: Presence
    # The call ringing for them or that they are on.
    call_id: int | None


@dataclasses.dataclass(frozen=True)
class ChannelOnBoard:
    channel_id: int
    channel_name: str
    figures: Figures
    open_callbacks: int


@dataclasses.dataclass(frozen=True)
class Board:
    day: Day
    at: datetime
    # Oldest first.
    calls: list[BoardCall]
    # By employee id.
    employees: list[EmployeeOnBoard]
    # By channel id.
    channels: list[ChannelOnBoard]


class BoardDesk:
    """Reads the board; `timezone` (an IANA name, VATS_TIMEZONE) says when "today" is."""

    def __init__(
        self, store: Store, timezone: str, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.store = store
        self.timezone = timezone
        self.zone = ZoneInfo(timezone)
        self.clock = clock

    def today(self) -> Day:
        return domain.day_of(self.clock(), self.zone, self.timezone)

    def snapshot(self) -> Board:
        """The board now, read in one unit (one snapshot of the store)."""
        now = self.clock()
        day = domain.day_of(now, self.zone, self.timezone)

        def work(uow: UnitOfWork) -> Board:
            calls = [c for c in uow.calls.active() if domain.on_board(c)]
            staff = uow.employees.with_telephony()
            return Board(
                day=day,
                at=now,
                calls=_board_calls(uow, calls, staff),
                employees=_employees(staff, calls),
                channels=_channels(uow, day),
            )

        return units.read(self.store, work)


def _board_calls(uow: UnitOfWork, calls: list[Call], staff: dict[int, Employee]) -> list[BoardCall]:
    shown = {e for c in calls for e in c.viewers}
    names = {e: staff[e].name for e in shown if e in staff}
    missing = shown - names.keys()
    if missing:
        names.update({e: found.name for e, found in uow.employees.get_many(missing).items()})
    return [
        BoardCall(units.view_of(uow, call), tuple((e, names.get(e, "")) for e in call.viewers))
        for call in sorted(calls, key=lambda c: (c.created_at, c.call_id))
    ]


def _employees(staff: dict[int, Employee], calls: Iterable[Call]) -> list[EmployeeOnBoard]:
    states = domain.presences(staff, calls)
    return [EmployeeOnBoard(e, staff[e].name, *states[e]) for e in sorted(staff)]


def _channels(uow: UnitOfWork, day: Day) -> list[ChannelOnBoard]:
    figures = domain.day_figures(
        uow.call_facts.created_between(day.start, day.end),
        uow.call_facts.ended_between(day.start, day.end),
        day,
    )
    return [
        ChannelOnBoard(
            channel_id=channel.channel_id,
            channel_name=channel.name,
            figures=figures.get(channel.channel_id, Figures()),
            open_callbacks=uow.callbacks.count_open(channel.channel_id),
        )
        for channel in uow.channels.list()
        if _shown(channel, figures)
    ]


def _shown(channel: Channel, figures: dict[int, Figures]) -> bool:
    """Enabled channels, and disabled ones that still had calls today."""
    return channel.enabled or channel.channel_id in figures
