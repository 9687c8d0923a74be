"""`verdict serve` settles the garbage collector once started (`analyzer.collector`): what
exists then is frozen, and the young generation is collected less often."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from analyzer.collector import YOUNG, settle


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored")
def test_settling_freezes_what_lives_and_raises_the_young_threshold() -> None:
    kept = [{"a": [1, 2]} for _ in range(1000)]  # containers alive at start
    assert settle() == (YOUNG, 20, 20)
    assert gc.get_freeze_count() >= len(kept)
    gc.collect()
    assert gc.get_freeze_count() >= len(kept)  # a full collection leaves them frozen


@pytest.mark.usefixtures("restored")
def test_cycles_made_after_settling_are_still_collected() -> None:
    settle(young=100)

    class Node:
        other: object

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    kept = [[i] for i in range(5000)]  # allocations that run the young and middle collections
    assert gone() is None, "a cycle made after settling was never collected"
    assert len(kept) == 5000
