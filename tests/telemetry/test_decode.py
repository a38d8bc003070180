"""Telemetry v1 decoding: what is accepted, and every rejection's reason and field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from hub import telemetry
from hub.telemetry import Reason, Rejected

NOW_MS = int(datetime(2026, 11, 25, 0, 0, 10, tzinfo=UTC).timestamp() * 1000)
CONTRACT_EXAMPLE: dict[str, Any] = {
    "schema": "telemetry/1",
    "event_id": "0b6f7c1e-3f0a-4a53-9d43-2d3c8f6a1b20",
    "device_id": "GJ-BUK-0012-CAM1",
    "site_id": "GJ-BUK-0012",
    "ts": "2026-11-25T09:00:00.120+09:00",
    "kind": "measurement",
    "metrics": {"inference_latency_ms": 84.2, "hazards_detected": 1, "online": 1},
}


def raw(**changes: Any) -> bytes:
    record = {**CONTRACT_EXAMPLE, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


def rejection(data: bytes) -> Rejected:
    with pytest.raises(Rejected) as caught:
        telemetry.decode(data, NOW_MS)
    return caught.value


def test_contract_example_is_accepted_with_its_event_time() -> None:
    event = telemetry.decode(raw(), NOW_MS)
    assert event.site_id == "GJ-BUK-0012"
    assert event.device_id == "GJ-BUK-0012-CAM1"
    # 09:00:00.120 in Korea is 00:00:00.120 UTC.
    assert event.ts_ms == int(
        datetime(2026, 11, 25, 0, 0, 0, 120_000, tzinfo=UTC).timestamp() * 1000
    )
    assert event.metrics == {"inference_latency_ms": 84.2, "hazards_detected": 1.0, "online": 1.0}


def test_encode_round_trips() -> None:
    ts = datetime(2026, 11, 25, 0, 0, 1, 500_000, tzinfo=UTC)
    data = telemetry.encode(
        event_id="e1", device_id="D", site_id="S", ts=ts, kind="heartbeat", metrics={"online": 1}
    )
    event = telemetry.decode(data, NOW_MS)
    assert (event.event_id, event.kind, event.ts_ms) == (
        "e1",
        "heartbeat",
        int(ts.timestamp() * 1000),
    )


def test_unknown_fields_are_ignored() -> None:
    assert telemetry.decode(raw(firmware="1.2.3"), NOW_MS).event_id == CONTRACT_EXAMPLE["event_id"]


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (raw(metrics={"online": "yes"}), "metrics.online: not a finite number"),
        (raw(metrics={"online": True}), "metrics.online: not a finite number"),
        (
            b'{"schema":"telemetry/1","event_id":"e","device_id":"d","site_id":"s",'
            b'"ts":"2026-11-25T00:00:00Z","kind":"measurement","metrics":{"online":1e999}}',
            "metrics.online: not a finite number",
        ),
        (raw(metrics={}), "metrics: 0 entries, expected 1 to 64"),
        (raw(metrics={f"m{i}": i for i in range(65)}), "metrics: 65 entries, expected 1 to 64"),
        (raw(metrics={"Online": 1}), "metrics.'Online': name does not match"),
        (raw(metrics={"a" * 65: 1}), "name does not match"),
        (raw(site_id=...), "site_id: required field missing"),
        (raw(schema="telemetry/2"), "schema: expected 'telemetry/1'"),
        (raw(kind="photo"), "kind: 'photo' is not one of"),
        (raw(ts="2026-11-25T09:00:00"), "ts: '2026-11-25T09:00:00' is not RFC 3339 with an offset"),
        (raw(ts="2026-02-30T09:00:00Z"), "ts: not a valid time"),
        (raw(ts=1764028800), "ts: expected an RFC 3339 string, got number"),
        (raw(event_id=""), "event_id: length 0, expected 1 to 128"),
        (raw(device_id=7), "device_id: expected a string, got number"),
        (b"[1, 2]", "record: expected a JSON object, got array"),
    ],
)
def test_schema_violations_name_the_field(data: bytes, detail: str) -> None:
    error = rejection(data)
    assert error.reason is Reason.SCHEMA_VIOLATION
    assert detail in error.detail


@pytest.mark.parametrize("data", [b"", b"{", b"\xff\xfe", b'{"metrics": NaN}', b"not json"])
def test_malformed_json(data: bytes) -> None:
    assert rejection(data).reason is Reason.MALFORMED_JSON


def test_too_large_is_judged_before_parsing() -> None:
    data = raw(padding="x" * telemetry.MAX_BYTES)
    error = rejection(data)
    assert error.reason is Reason.TOO_LARGE
    assert str(len(data)) in error.detail


def test_exactly_64_kib_is_not_too_large() -> None:
    base = raw(padding="")
    data = raw(padding="x" * (telemetry.MAX_BYTES - len(base)))
    assert len(data) == telemetry.MAX_BYTES
    telemetry.decode(data, NOW_MS)


def test_clock_skew_over_five_minutes_ahead() -> None:
    ahead = datetime.fromtimestamp(NOW_MS / 1000 + 301, UTC).isoformat()
    error = rejection(raw(ts=ahead))
    assert error.reason is Reason.CLOCK_SKEW
    assert "301 s ahead" in error.detail
    within = datetime.fromtimestamp(NOW_MS / 1000 + 299, UTC).isoformat()
    telemetry.decode(raw(ts=within), NOW_MS)
