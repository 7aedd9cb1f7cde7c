"""core.rpc.encode.timestamp gives exactly what Timestamp.FromDatetime gives, for aware
and naive times, before and after the epoch, to the microsecond."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from core.rpc.encode import timestamp

MOSCOW = timezone(timedelta(hours=3))


def by_protobuf(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_naive_times_are_utc_as_protobuf_has_them(value: datetime) -> None:
    assert timestamp(value) == by_protobuf(value)


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, MOSCOW, timezone(timedelta(hours=-5, minutes=-30))]),
    )
)
def test_aware_times_equal_protobuf(value: datetime) -> None:
    assert timestamp(value) == by_protobuf(value)


def test_edges_of_a_second_and_the_epoch() -> None:
    for value in (
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 11, 27, 20, 30, 59, 999999, tzinfo=MOSCOW),
        datetime(2026, 11, 27, 20, 31, 0, 1, tzinfo=UTC),
    ):
        assert timestamp(value) == by_protobuf(value)
    assert timestamp(None) is None
