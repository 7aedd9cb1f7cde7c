"""The HTTP API's names of the telephony.v1 enums (`ringing`, `in-progress`, `incoming`,
`show`, `mp3`, `admin`), derived from the generated protos, and how it writes times; shared
by core, gateway and CLI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Final, Generic, TypeVar, cast

from google.protobuf.descriptor import EnumDescriptor

from telephony.v1 import call_pb2, call_service_pb2, directory_service_pb2

E = TypeVar("E", bound=int)


def wire_time(moment: datetime) -> str:
    """A time as the audit log, its exports and core's messages write it: RFC 3339 in
    UTC to the millisecond, with `Z` (2026-11-27T13:18:04.189Z)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def wire_name(enum: EnumDescriptor, number: int) -> str | None:
    """The HTTP API's name of an enum value: STATE_IN_PROGRESS is "in-progress",
    DIRECTION_INCOMING "incoming". None for the unspecified value and unknown numbers."""
    value = enum.values_by_number.get(number)
    if value is None or number == 0:
        return None
    # Each value's name starts with its enum's name in capitals: State -> STATE_.
    prefix = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", enum.name).upper() + "_"
    return value.name.removeprefix(prefix).lower().replace("_", "-")


class WireNames(Generic[E]):
    """One proto enum's values by their HTTP API names and back, in the proto's order.
    The unspecified value (zero) has no name."""

    def __init__(self, enum: type[E]) -> None:
        # The generated class's metaclass carries DESCRIPTOR, which mypy cannot see in type[E].
        descriptor: EnumDescriptor = enum.DESCRIPTOR  # type: ignore[attr-defined]
        self._numbers: dict[str, E] = {}
        for value in descriptor.values:
            name = wire_name(descriptor, value.number)
            if name is not None:
                self._numbers[name] = cast(E, value.number)
        self._names: dict[int, str] = {number: name for name, number in self._numbers.items()}
        self.names: tuple[str, ...] = tuple(self._numbers)

    def name(self, number: int) -> str | None:
        """None for the unspecified value and for numbers newer than this code."""
        return self._names.get(number)

    def number(self, name: str | None) -> E:
        """The unspecified value (zero) for a name that is not given or not known."""
        return self._numbers.get(name or "", cast(E, 0))

    def __contains__(self, name: object) -> bool:
        return name in self._numbers

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)


STATUS: Final = WireNames(call_pb2.Call.State)
DIRECTION: Final = WireNames(call_pb2.Direction)
FORMAT: Final = WireNames(call_pb2.Recording.Format)
CARD_EVENT: Final = WireNames(call_service_pb2.CallCardEvent.Type)
ROLE: Final = WireNames(directory_service_pb2.Role)
CALLBACK_STATE: Final = WireNames(call_service_pb2.Callback.State)
CALLBACK_RESOLUTION: Final = WireNames(call_service_pb2.Callback.Resolution)
EMPLOYEE_STATE: Final = WireNames(call_service_pb2.EmployeeState.State)

# The active-status rule is core/domain.py's ACTIVE_STATUSES (see also Call.State in
# call.proto): a call in these states is active and its card shown. The gateway and its pages
# may not import core, so they read this copy, which tests/test_vocabulary.py pins to the rule.
_ACTIVE_STATES = (call_pb2.Call.STATE_RINGING, call_pb2.Call.STATE_IN_PROGRESS)
ACTIVE_STATUSES: Final = tuple(name for name in STATUS if STATUS.number(name) in _ACTIVE_STATES)
