"""Quantile sketches filled many values at a time, in the ``ddsketch`` library's own form.

``DDSketch.add`` costs about half a microsecond a value (a method call into the mapping, another
into the store, summary statistics the accumulator keeps anyway), paid for every metric of every
record. Here a window's values wait in a flat array and are binned together: the same logarithmic
mapping and key formula as the library (so the same bins, the same relative-accuracy guarantee,
the same protobuf form), one store update per distinct bin. The result is a library sketch:
mergeable with any other, read by its ``get_quantile_value``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from ddsketch import DDSketch
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import DenseStore

RELATIVE_ACCURACY = 0.01
MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
# LogarithmicMapping's key: ceil(log2(value) * multiplier) + offset, the multiplier computed
# exactly as the library does (``tests/streams/test_sketches.py`` holds it to the library's keys).
_GAMMA_MANTISSA = 2 * RELATIVE_ACCURACY / (1 - RELATIVE_ACCURACY)
_MULTIPLIER = 1 / math.log1p(_GAMMA_MANTISSA) * math.log(2)
_MIN_POSSIBLE = MAPPING.min_possible


def empty() -> BaseDDSketch:
    return DDSketch(RELATIVE_ACCURACY)


def _keys(values: Sequence[float]) -> list[int]:
    log, ceil, multiplier = math.log, math.ceil, _MULTIPLIER
    return [int(ceil(log(v, 2) * multiplier)) for v in values]


def _store(keys: list[int]) -> DenseStore:
    """The lowest and highest bins first, so the store sizes its range once: added in order, each
    new highest bin re-centred the whole store (over half the time of a fold of 256 values)."""
    store = DenseStore()
    counts = Counter(keys)
    if not counts:
        return store
    low, high = min(counts), max(counts)
    store.add(low, float(counts.pop(low)))
    if high != low:
        store.add(high, float(counts.pop(high)))
    for key, n in counts.items():
        store.add(key, float(n))
    return store


def sketch_of(values: Sequence[float]) -> BaseDDSketch:
    """The sketch ``DDSketch.add`` would build from ``values`` (its bins, not its own sum, min
    and max, which the accumulator keeps)."""
    if not values:
        return empty()
    if min(values) > _MIN_POSSIBLE:
        positive: Sequence[float] = values
        negative: list[float] = []
        zeros = 0
    else:
        positive = [v for v in values if v > _MIN_POSSIBLE]
        negative = [-v for v in values if v < -_MIN_POSSIBLE]
        zeros = len(values) - len(positive) - len(negative)
    return BaseDDSketch(
        mapping=MAPPING,
        store=_store(_keys(positive)),
        negative_store=_store(_keys(negative)),
        zero_count=float(zeros),
    )


def quantiles_of(values: Sequence[float], qs: Sequence[float]) -> list[float | None]:
    """What ``sketch_of(values).get_quantile_value(q)`` answers for each ``q``, without building
    the sketch: the library takes the bin holding rank ``q * (count - 1)``; bins are ordered as
    the values are, so that is the bin of the value at that rank once sorted (negative values
    mirrored, the zero bin between). Closing a window asks three quantiles of ~60 values."""
    if not values:
        return [None for _ in qs]
    ordered = sorted(values)
    last = len(ordered) - 1
    out: list[float | None] = []
    for q in qs:
        if q < 0 or q > 1:
            out.append(None)
            continue
        value = ordered[int(q * last)]
        if value > _MIN_POSSIBLE:
            out.append(MAPPING.value(MAPPING.key(value)))
        elif value < -_MIN_POSSIBLE:
            out.append(-MAPPING.value(MAPPING.key(-value)))
        else:
            out.append(0.0)
    return out


def fold(sketch: BaseDDSketch | None, values: Sequence[float]) -> BaseDDSketch:
    """``sketch`` with ``values`` added (a new sketch when there was none)."""
    part = sketch_of(values)
    if sketch is None:
        return part
    sketch.merge(part)
    return sketch
