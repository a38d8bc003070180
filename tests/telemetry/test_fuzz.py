"""Hostile input to the intake, property-based: whatever the bytes, key or JSON shape, no exception
escapes the processor and every record is accepted, recognised as a repeat, or in the DLQ with its
original bytes and source offset.

The generators go from raw bytes, through arbitrary JSON, to valid records with one field replaced
by anything JSON can hold (the shapes a buggy device firmware produces).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub import signing, topics
from hub.telemetry import Reason
from streams.processor import PartitionProcessor, ProcessorConfig, Record
from tests.streams.test_processor import KEYS, SNAPSHOT

NOW_MS = 1_795_600_000_000
SITE = "GJ-BUK-0001"
NOW = datetime.fromtimestamp(NOW_MS / 1000, UTC)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and infinities too: json.dumps writes them as bare NaN / Infinity
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def valid(event_id: str) -> dict[str, Any]:
    return {
        "schema": "telemetry/1",
        "event_id": event_id,
        "device_id": f"{SITE}-CAM1",
        "site_id": SITE,
        "ts": (NOW - timedelta(seconds=5)).isoformat().replace("+00:00", "Z"),
        "kind": "measurement",
        "metrics": {"latency_ms": 12.5},
    }


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid record with one field replaced, removed or added, or its metrics scrambled."""
    body = valid(draw(st.text(min_size=1, max_size=70)))
    field = draw(st.sampled_from([*body, "metrics.*", "extra", "device", "when"]))
    if field == "device":  # unregistered, or registered at another site
        body["device_id"] = draw(st.sampled_from(["GJ-BUK-0002-CAM1", "JN-MOKPO-0001-CAM1"]))
    elif field == "when":  # hours behind to well past the allowed clock skew
        shift = timedelta(seconds=draw(st.integers(-86_400, 3_600)))
        body["ts"] = (NOW + shift).isoformat().replace("+00:00", "Z")
    elif field == "metrics.*":
        body["metrics"] = draw(st.dictionaries(st.text(max_size=70), json_values, max_size=70))
    elif field == "extra":
        body[draw(st.text(max_size=10))] = draw(json_values)
    elif draw(st.booleans()):
        del body[field]
    else:
        body[field] = draw(json_values)
    return json.dumps(body).encode()


values = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    mutated(),
    st.builds(lambda: b"x" * (64 * 1024 + 1)),  # too large (built: a repr would be 64 KiB)
    st.just(json.dumps(valid("ok")).encode()),
)
keys = st.one_of(st.none(), st.binary(max_size=20), st.just(SITE.encode()))


def signed(value: bytes) -> list[tuple[str, bytes]]:
    """Signed as the device it names would sign it, so that what follows intake's identity check
    is tried too (an unsigned record stops there)."""
    try:
        device = json.loads(value).get("device_id")
    except (ValueError, AttributeError, RecursionError):
        return []
    key = KEYS.get(device) if isinstance(device, str) else None
    return signing.headers(key, value) if key else []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(keys, values), min_size=1, max_size=12))
def test_every_record_is_accepted_repeated_or_rejected_with_its_bytes(
    batch: list[tuple[bytes | None, bytes]],
) -> None:
    processor = PartitionProcessor(0, ProcessorConfig(partitions=1))
    records = [
        Record(topics.TELEMETRY, 0, n, key, value, NOW_MS, signed(value))
        for n, (key, value) in enumerate(batch)
    ]

    result = processor.process(records, SNAPSHOT, NOW_MS)

    dlq = [json.loads(o.value) for o in result.outgoing if o.topic == topics.DLQ]
    rejected = {d["offset"]: d for d in dlq}
    assert len(rejected) == len(dlq), "a record rejected twice"
    for offset, entry in rejected.items():
        assert base64.b64decode(entry["value_b64"]) == records[offset].value
        assert entry["reason"] in set(Reason)
        assert entry["detail"]
    outcomes = result.counts.accepted + result.counts.duplicate + len(dlq)
    assert outcomes == len(records)
