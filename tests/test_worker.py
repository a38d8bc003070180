"""The worker's garbage-collector settings: fewer collections, no cycle left behind."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from hub.worker import GC_YOUNGEST_THRESHOLD, tune_gc


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture
def tuned() -> Iterator[None]:
    before = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_start_up_heap_frozen_and_youngest_generation_collected_less_often(tuned: None) -> None:
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == GC_YOUNGEST_THRESHOLD


def test_cycles_made_after_start_up_are_still_collected_unasked(tuned: None) -> None:
    first = Node()
    gone = weakref.ref(first)
    del first
    made = 0
    while gone() is not None:
        Node()  # garbage at once, left to the collector
        made += 1
        assert made <= 10 * GC_YOUNGEST_THRESHOLD, "no collection ran"
