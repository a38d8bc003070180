"""`hub bench` on a tiny load: the benchmark is measured, not asserted; this checks the report is
sane (positive rates, ratio below 1.2, every record accounted)."""

from __future__ import annotations

import json

from hub.settings import Settings
from tests.conftest import run_hub


def test_a_tiny_bench_reports_sane_figures(loaded_registry: Settings) -> None:
    result = run_hub(
        "bench",
        "--records",
        "5000",
        "--workers",
        "1",
        "--latency-rates",
        "1",
        "--latency-duration",
        "15",
        "--json",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["records"] == 5000
    assert report["events_per_s"] > 0
    assert report["raw_consume_per_s"] > 0
    assert report["copy_rows_per_s"] > 0
    assert 0 < report["ratio"] < 1.2
    assert report["accounted"] is True
    one_hz = report["latency"]["1.0"]
    assert one_hz["windows"] > 0
    assert 0 <= one_hz["behind_close_p50_s"] <= one_hz["behind_close_p99_s"]
    assert report["p50_latency_s"] == one_hz["event_p50_s"]
