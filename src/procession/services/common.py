"""Small things every use case needs: the caller, and the garbage collector paused around bulk work."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """Who is asking: the team, the role of the key, and the user the key acts as."""

    team_id: str
    role: str
    user_id: str | None = None


_gc_lock, _gc_depth = threading.Lock(), 0
GC_PILE_UP = 200_000  # young objects left over by overlapping pauses before they are collected anyway


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around bulk work (thousands of short-lived dicts make it run
    constantly; reference counting still frees them). Nested and concurrent uses are counted; when they
    overlap without end (a busy worker applying two chunks at once), the young objects left over are still
    collected once they pile up, so garbage in reference cycles cannot grow without bound."""
    global _gc_depth
    with _gc_lock:
        _gc_depth += 1
        gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0:
                gc.enable()
            elif gc.get_count()[0] > GC_PILE_UP:
                gc.collect(1)
