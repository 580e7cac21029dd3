"""Small shared helpers."""

from __future__ import annotations

import gc
import weakref

from procession.tuning import gc_paused


def test_gc_paused_nests_and_restores_the_collector() -> None:
    assert gc.isenabled()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_overlapping_pauses_still_collect_cycles_once_they_pile_up(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Two pauses that keep overlapping never re-enable the collector: garbage in cycles is collected
    anyway when one of them ends with enough young objects left."""
    import procession.tuning as common

    monkeypatch.setattr(common, "GC_PILE_UP", 1_000)

    class Node:
        def __init__(self) -> None:
            self.me = self  # a reference cycle: only the cyclic collector frees it

    gc.collect()
    with gc_paused():  # the other, still running
        with gc_paused():
            cycles = [Node() for _ in range(5_000)]
            probe = weakref.ref(cycles[0])
            del cycles
        assert not gc.isenabled() and probe() is None  # collected though the collector stays paused
    assert gc.isenabled()
