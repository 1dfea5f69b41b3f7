"""The cyclic garbage collector paused while a batch is built (filing, storing).

A batch allocates hundreds of thousands of small containers (facts, lookups, rows) that die
with it and hold no reference cycles worth collecting meanwhile, yet every 700 allocations
trigger a collection, and the older generations' walk over everything Django and Celery
loaded at start-up. bench/matching.py: a quarter of filing's own CPU was the collector
(0.04-0.065 of 0.16-0.22 ms a message). Reference counting still frees everything at once;
the collector runs again as soon as the batch is done, so whatever cycles it left are
collected then, and memory stays bounded by one batch."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    if not gc.isenabled():  # nested, or paused by someone else: theirs to resume
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
