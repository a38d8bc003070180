"""``python -m tooling.bench.validator``: the per-record floor of the hub's own work."""

from __future__ import annotations

import pytest

from tooling.bench.validator import (
    minutes_us_per_record,
    processor_us_per_record,
    representative_records,
)


def test_the_processor_floor_is_measured_on_accepted_records() -> None:
    records = representative_records(2000)
    assert processor_us_per_record(records, repeat=1) > 0


def test_the_processor_floor_refuses_to_measure_rejections() -> None:
    records = representative_records(2000)
    records[7] = (records[7][0], b"{not telemetry")
    with pytest.raises(RuntimeError, match="accepted 1,999 of 2,000"):
        processor_us_per_record(records, repeat=1)


def test_the_minutes_run_closes_windows_of_every_record() -> None:
    # It raises unless every record was accepted and windows closed inside the run.
    assert minutes_us_per_record(minutes=1, repeat=1) > 0
