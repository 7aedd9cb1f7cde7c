"""Once core and the gateway serve, the garbage collector is settled
(vats_lifetime.settle_garbage_collector): what they built to start is frozen out of its
way, its young collections run less often, and it still frees what is made afterwards."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from vats_lifetime import YOUNG_COLLECTION_THRESHOLD, settle_garbage_collector


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def collector() -> Iterator[None]:
    """The test process's collector as it was, afterwards."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_the_startup_heap_is_frozen_and_later_cycles_are_still_collected(
    collector: None,
) -> None:
    before = Node()
    settle_garbage_collector()
    assert gc.get_freeze_count() > 0
    # Frozen: in none of the generations a collection walks.
    assert all(o is not before for o in gc.get_objects())
    # A cycle made afterwards is garbage the collector still finds.
    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second
    gc.collect()
    assert gone() is None


def test_young_collections_run_less_often_and_the_older_as_before(collector: None) -> None:
    _, middle, old = gc.get_threshold()
    settle_garbage_collector()
    assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, middle, old)
