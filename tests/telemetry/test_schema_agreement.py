"""The Python validator and schemas/telemetry-v1.schema.json accept and reject the same payloads.

Hypothesis generates valid records, records broken in one place, and arbitrary JSON; for every one
the JSON Schema (2020-12, formats asserted) and ``hub.telemetry.decode`` must agree.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from hub import telemetry
from hub.telemetry import Reason, Rejected

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "telemetry-v1.schema.json").read_text()
)
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
FAR_FUTURE_MS = 2**62  # no clock skew in this comparison: the schema cannot know the clock

metric_names = st.from_regex(r"\A[a-z][a-z0-9_]{0,63}\Z")
finite = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)
# What a metric may hold: -1e15 to 1e15 (the broken records and arbitrary JSON try the rest).
in_range = st.floats(min_value=-1e15, max_value=1e15) | st.integers(-(10**15), 10**15)
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
timestamps = st.builds(
    lambda dt, tz, digits: _rfc3339(dt.replace(tzinfo=UTC).astimezone(tz), digits),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)),
    offsets,
    st.sampled_from([0, 3, 6]),
)
ids = st.text(min_size=1, max_size=64)


def _rfc3339(dt: datetime, digits: int) -> str:
    text = dt.isoformat(timespec={0: "seconds", 3: "milliseconds", 6: "microseconds"}[digits])
    return text.replace("+00:00", "Z") if dt.utcoffset() == timedelta(0) and digits == 3 else text


valid_records = st.fixed_dictionaries(
    {
        "schema": st.just("telemetry/1"),
        "event_id": st.text(min_size=1, max_size=128),
        "device_id": ids,
        "site_id": ids,
        "ts": timestamps,
        "kind": st.sampled_from(telemetry.KINDS),
        "metrics": st.dictionaries(metric_names, in_range, min_size=1, max_size=64),
    },
    optional={"firmware": st.text(max_size=10)},
)

json_values = st.recursive(
    st.none() | st.booleans() | finite | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)

breakages = st.sampled_from(
    [
        ("drop", "schema"),
        ("drop", "event_id"),
        ("drop", "ts"),
        ("drop", "metrics"),
        ("set", "schema"),
        ("set", "kind"),
        ("set", "ts"),
        ("set", "device_id"),
        ("set", "metrics"),
        ("metric_value", None),
        ("metric_name", None),
        ("too_many", None),
        ("empty", "event_id"),
        ("long", "site_id"),
    ]
)


@st.composite
def broken_records(draw: st.DrawFn) -> Any:
    record: dict[str, Any] = dict(draw(valid_records))
    action, maybe_field = draw(breakages)
    field = maybe_field or "metrics"
    if action == "drop":
        del record[field]
    elif action == "set":
        record[field] = draw(json_values | st.text(max_size=30))
    elif action == "metric_value":
        name = draw(metric_names)
        record["metrics"] = {name: draw(st.sampled_from([True, "1", None, [], {}, 1e400]))}
    elif action == "metric_name":
        record["metrics"] = {draw(st.text(max_size=70)): 1.0}
    elif action == "too_many":
        record["metrics"] = {f"m{i}": 1.0 for i in range(draw(st.integers(65, 80)))}
    elif action == "empty":
        record[field] = ""
    elif action == "long":
        record[field] = "X" * draw(st.integers(65, 80))
    return record


def python_accepts(record: Any) -> bool:
    try:
        data = json.dumps(record, allow_nan=True).encode()
    except (TypeError, ValueError):
        return False
    try:
        telemetry.decode(data, FAR_FUTURE_MS)
    except Rejected as error:
        reason = error.reason
    else:
        return True
    assert reason in (Reason.SCHEMA_VIOLATION, Reason.MALFORMED_JSON, Reason.TOO_LARGE)
    return False


def schema_accepts(record: Any) -> bool:
    return bool(VALIDATOR.is_valid(record))


common = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@common
@given(valid_records)
def test_valid_records_pass_both(record: dict[str, Any]) -> None:
    assert schema_accepts(record), list(VALIDATOR.iter_errors(record))
    assert python_accepts(record)


@common
@given(broken_records())
def test_broken_records_get_the_same_verdict(record: Any) -> None:
    assert schema_accepts(record) == python_accepts(record), record


@common
@given(json_values)
def test_arbitrary_json_gets_the_same_verdict(value: Any) -> None:
    assert schema_accepts(value) == python_accepts(value)


def test_the_schema_is_valid_2020_12_and_its_example_conforms() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    for example in SCHEMA["examples"]:
        assert schema_accepts(example)
        assert python_accepts(example)


def test_infinity_is_refused_by_both() -> None:
    record = {**SCHEMA["examples"][0], "metrics": {"online": math.inf}}
    assert not schema_accepts(record)
    assert not python_accepts(record)
