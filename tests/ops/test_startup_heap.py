"""What core and gateway built to start is frozen out of the garbage collector's way
(vats_lifetime.freeze_startup_heap, called once each serves); the collector still frees
what is made afterwards."""

from __future__ import annotations

import gc
import weakref

from vats_lifetime import freeze_startup_heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_the_startup_heap_is_frozen_and_later_cycles_are_still_collected() -> None:
    before = Node()
    gc.unfreeze()
    try:
        freeze_startup_heap()
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
    finally:
        gc.unfreeze()
