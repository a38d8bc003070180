"""Sketches binned in bulk against the ddsketch library's own, value by value: the same bins,
the same quantiles, mergeable both ways; and the accumulator that buffers values for them."""

from __future__ import annotations

import random

import pytest
from ddsketch import DDSketch
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.store import DenseStore

from streams import sketches
from streams.windows import FOLD_AT, Acc, decode_sketch, encode_sketch

QUANTILES = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0]


def library(values: list[float]) -> DDSketch:
    sketch = DDSketch(sketches.RELATIVE_ACCURACY)
    for value in values:
        sketch.add(value)
    return sketch


def bins(store: DenseStore) -> dict[int, float]:
    return {i + store.offset: c for i, c in enumerate(store.bins) if c}


def same(ours: BaseDDSketch, theirs: BaseDDSketch) -> None:
    assert bins(ours._store) == bins(theirs._store)
    assert bins(ours._negative_store) == bins(theirs._negative_store)
    assert ours._zero_count == theirs._zero_count
    assert ours.count == theirs.count
    for q in QUANTILES:
        assert ours.get_quantile_value(q) == theirs.get_quantile_value(q), q


def samples(seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    return {
        "latency": [rng.lognormvariate(4.5, 0.6) for _ in range(600)],
        "online": [1.0] * 60,
        "counts": [float(rng.randint(0, 5)) for _ in range(120)],  # zeros among them
        "signed": [rng.uniform(-50, 50) for _ in range(300)],
        "tiny_and_huge": [1e-300, 5e-324, -1e-300, 1e15, -1e15, 3.0, 0.0],
        "one": [42.0],
    }


@pytest.mark.parametrize("name", list(samples(0)))
def test_bulk_binning_gives_the_librarys_bins_and_quantiles(name: str) -> None:
    values = samples(7)[name]
    same(sketches.sketch_of(values), library(values))


def test_folding_in_parts_equals_adding_one_by_one() -> None:
    values = samples(3)["latency"]
    folded = None
    for start in range(0, len(values), 97):
        folded = sketches.fold(folded, values[start : start + 97])
    assert folded is not None
    same(folded, library(values))


def test_bulk_and_library_sketches_merge_either_way() -> None:
    a, b = samples(1)["latency"], samples(2)["signed"]
    ours = sketches.sketch_of(a)
    ours.merge(library(b))
    theirs = library(b)
    theirs.merge(sketches.sketch_of(a))
    same(ours, library(a + b))
    same(theirs, library(a + b))


def test_quantiles_stay_within_the_relative_accuracy() -> None:
    values = sorted(samples(11)["latency"])
    sketch = sketches.sketch_of(values)
    for q in (0.5, 0.95, 0.99):
        exact = values[int(q * (len(values) - 1))]
        got = sketch.get_quantile_value(q)
        assert got is not None
        assert abs(got - exact) <= sketches.RELATIVE_ACCURACY * exact


def test_an_accumulator_buffers_then_bins_and_keeps_its_own_summary() -> None:
    values = samples(5)["latency"][: FOLD_AT * 2 + 17]
    acc = Acc()
    for value in values:
        acc.add(value)
    assert len(acc.pending) == 17  # two folds happened, the rest waits
    assert (acc.count, acc.min, acc.max) == (len(values), min(values), max(values))
    assert acc.sum == pytest.approx(sum(values))
    same(acc.sketch, library(values))
    assert len(acc.pending) == 0
    restored = Acc(acc.count, acc.sum, acc.min, acc.max)
    restored.sketch = decode_sketch(encode_sketch(acc.sketch))
    # The protobuf form carries gamma, from which the library recomputes its multiplier.
    assert restored.quantile(0.99) == pytest.approx(acc.quantile(0.99), rel=1e-12)


def test_merging_accumulators_merges_buffered_values_too() -> None:
    a, b = Acc(), Acc()
    for value in samples(8)["latency"][:100]:
        a.add(value)
    for value in samples(9)["latency"][:50]:
        b.add(value)
    a.merge(b)
    same(a.sketch, library(samples(8)["latency"][:100] + samples(9)["latency"][:50]))


@pytest.mark.parametrize("name", list(samples(0)))
def test_quantiles_of_unbinned_values_are_the_librarys(name: str) -> None:
    values = samples(13)[name]
    theirs = library(values)
    assert sketches.quantiles_of(values, QUANTILES) == [
        theirs.get_quantile_value(q) for q in QUANTILES
    ]


def test_an_accumulator_answers_alike_before_and_after_binning() -> None:
    values = [*samples(17)["signed"][: FOLD_AT - 3], 0.0, 1e-300]
    acc = Acc()
    for value in values:
        acc.add(value)
    # Under FOLD_AT nothing is binned: answered from the values themselves.
    assert len(acc.pending) == len(values)
    theirs = library(values)
    low, high = min(values), max(values)
    expected = [min(max(float(theirs.get_quantile_value(q) or 0), low), high) for q in QUANTILES]
    assert acc.quantiles(QUANTILES) == expected
    assert acc.sketch.count == len(values)  # now binned
    assert len(acc.pending) == 0
    assert acc.quantiles(QUANTILES) == expected
    assert Acc().quantiles((0.5, 0.99)) == [None, None]
