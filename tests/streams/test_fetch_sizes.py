"""What a partition's log holds decides every verdict and window, never how it was fetched:
windows are filled a fetch at a time (``PartitionWindows.judge`` per record, ``add_all`` per
fetch), and a crash re-delivers the log in other fetches."""

from __future__ import annotations

from dataclasses import replace

import pytest

from streams.processor import PartitionProcessor, ProcessorConfig
from tooling.bench.validator import partition_records

SNAPSHOT, GOOD = partition_records(3)
NOW_MS = GOOD[-1].timestamp + 1000


def run(fetch: int) -> tuple[int, int, list[str]]:
    """The log, then each record again (repeats), in fetches of ``fetch``; then every window
    closed. (accepted, duplicates, the aggregate rows written)."""
    p = PartitionProcessor(0, ProcessorConfig())
    log = GOOD + [replace(r, offset=r.offset + len(GOOD)) for r in GOOD]
    accepted = duplicate = 0
    rows: list[object] = []
    for start in range(0, len(log), fetch):
        batch = log[start : start + fetch]
        result = p.process(batch, SNAPSHOT, batch[-1].timestamp)
        accepted += result.counts.accepted
        duplicate += result.counts.duplicate
        rows.extend(result.aggregate_rows)
    rows.extend(p.tick(SNAPSHOT, NOW_MS + 10 * 60_000).aggregate_rows)
    return accepted, duplicate, sorted(map(repr, rows))


@pytest.mark.parametrize("fetch", [1, 7, 400])
def test_counts_and_windows_do_not_depend_on_the_fetch_size(fetch: int) -> None:
    accepted, duplicate, rows = run(fetch)
    assert (accepted, duplicate) == (len(GOOD), len(GOOD))
    assert rows
    assert (accepted, duplicate, rows) == run(len(GOOD) * 2)
