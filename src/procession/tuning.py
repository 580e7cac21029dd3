"""Interpreter settings for bulk work, each held only while some work needs it: the cyclic garbage collector
paused (``gc_paused``) and quick thread switches (``quick_switches``). Both are process-wide, so uses are
counted: nested and overlapping ones compose, and the last one to end puts the process's own back."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_gc_depth = 0
GC_PILE_UP = 200_000  # young objects left over by overlapping pauses before they are collected anyway
_switch_depth, _switch_before = 0, 0.0
SWITCH_INTERVAL_S = 0.0002


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around bulk work (thousands of short-lived dicts make it run
    constantly; reference counting still frees them). When uses overlap without end (a busy worker applying
    two chunks at once), the young objects left over are still collected once they pile up, so garbage in
    reference cycles cannot grow without bound."""
    global _gc_depth
    with _lock:
        _gc_depth += 1
        gc.disable()
    try:
        yield
    finally:
        with _lock:
            _gc_depth -= 1
            if _gc_depth == 0:
                gc.enable()
            elif gc.get_count()[0] > GC_PILE_UP:
                gc.collect(1)


@contextmanager
def quick_switches() -> Iterator[None]:
    """Switch threads every 0.2 ms at most, while work hands off between two threads, one of them in calls
    into SQLite that hold no Python lock (a bulk submission's entries, the embedded runner's commits): the
    other thread would keep Python's lock up to the switch interval (5 ms by default) before the first can
    take its next step."""
    global _switch_depth, _switch_before
    with _lock:
        if _switch_depth == 0:
            _switch_before = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_before, SWITCH_INTERVAL_S))
        _switch_depth += 1
    try:
        yield
    finally:
        with _lock:
            _switch_depth -= 1
            if _switch_depth == 0:
                sys.setswitchinterval(_switch_before)
