"""Telemetry v1, the message devices publish: decoding, validation and the reasons for rejection.

The hot path is one ``msgspec`` typed decode (validation happens while decoding). Only a record
that fails takes the slow path, which walks the generic JSON once more to name the exact field
(``metrics.online: not a finite number``): rejections are rare, details must be precise.

Agreement with ``schemas/telemetry-v1.schema.json`` is checked by a property-based test.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

import msgspec

SCHEMA: Final = "telemetry/1"
MAX_BYTES: Final = 64 * 1024
MAX_METRICS: Final = 64
MAX_FUTURE_MS: Final = 5 * 60 * 1000
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND: Final = timedelta(milliseconds=1)
KINDS: Final = ("measurement", "heartbeat", "detection", "incident")

# `(?!\n)` before `$`: in Python's re, `$` also matches before a final newline.
METRIC_NAME_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}(?!\n)$"
TS_PATTERN: Final = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])(?!\n)$"
)
# Values beyond this cannot be summed over a window without losing the count's precision or
# overflowing a sketch: the accepted range is documented in the JSON Schema.
VALUE_LIMIT: Final = 1e15


class Reason(StrEnum):
    """Why a record went to the dead-letter topic: the contract's reasons, then the hub's own
    (documented in ``schemas/dlq-record-v1.schema.json``)."""

    MALFORMED_JSON = "malformed_json"
    SCHEMA_VIOLATION = "schema_violation"
    UNKNOWN_DEVICE = "unknown_device"
    SITE_MISMATCH = "site_mismatch"
    TOO_LARGE = "too_large"
    CLOCK_SKEW = "clock_skew"
    LATE = "late"
    UNAUTHENTICATED = "unauthenticated"
    # The hub's own: a metric its demonstration does not declare; a record on another partition
    # than its site's (a producer not using Kafka's default murmur2 partitioner); a record whose
    # processing failed for a reason no other rule names; a record dated outside its
    # demonstration's active period (before its start, after its end or early end, or of a
    # demonstration not approved): only active demonstrations' records are judged.
    UNDECLARED_METRIC = "undeclared_metric"
    WRONG_PARTITION = "wrong_partition"
    UNPROCESSABLE = "unprocessable"
    NOT_ACTIVE = "not_active"


class Rejected(Exception):
    """A record the hub cannot accept: its contract reason and a detail naming the field."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


FiniteNumber = Annotated[float, msgspec.Meta(ge=-VALUE_LIMIT, le=VALUE_LIMIT)]
Id64 = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Kind = Literal["measurement", "heartbeat", "detection", "incident"]


class TelemetryV1(msgspec.Struct, frozen=True, gc=False):
    """The wire form. Unknown fields are ignored (a tolerant reader within a major version)."""

    schema: Literal["telemetry/1"]
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    device_id: Id64
    site_id: Id64
    # Checked after decoding by ``ts_ms`` (TS_PATTERN, then the calendar): msgspec would run the
    # pattern through Python's re for every record.
    ts: str
    kind: Kind
    # Names are checked after decoding against a cache of names already seen valid: msgspec
    # runs key patterns through Python's re, which cost more than the rest of the decode.
    metrics: Annotated[dict[str, FiniteNumber], msgspec.Meta(min_length=1, max_length=MAX_METRICS)]


class Event(msgspec.Struct, frozen=True, gc=False):
    """An accepted event as the pipeline carries it: event time resolved to epoch milliseconds."""

    event_id: str
    device_id: str
    site_id: str
    ts_ms: int
    kind: str
    metrics: dict[str, float]


_decoder: Final = msgspec.json.Decoder(TelemetryV1)


def decode(raw: bytes, now_ms: int) -> Event:
    """Decode and validate one record; raise Rejected with the contract's reason.

    ``now_ms`` is the record's arrival (the broker's log-append time, so that a replay judges
    alike), passed in so the clock-skew rule is testable with plain values. Registry checks
    (device known, at that site) belong to intake, not to the message.
    """
    if len(raw) > MAX_BYTES:
        raise Rejected(Reason.TOO_LARGE, f"record is {len(raw)} bytes, over {MAX_BYTES}")
    try:
        msg = _decoder.decode(raw)
    except msgspec.ValidationError as error:
        raise Rejected(Reason.SCHEMA_VIOLATION, explain(raw, error)) from None
    except msgspec.DecodeError as error:
        raise Rejected(Reason.MALFORMED_JSON, f"record: not valid JSON ({error})") from None
    ts_ms = parse_ts(msg.ts)
    metrics = msg.metrics
    for name in metrics:
        if name not in _valid_names and not _remember_valid_name(name):
            raise Rejected(
                Reason.SCHEMA_VIOLATION,
                f"metrics.{_short(name, 40)}: name does not match [a-z][a-z0-9_]{{0,63}}",
            )
    if ts_ms > now_ms + MAX_FUTURE_MS:
        ahead = (ts_ms - now_ms) / 1000
        raise Rejected(Reason.CLOCK_SKEW, f"ts: {ahead:.0f} s ahead of the hub's clock (max 300 s)")
    return Event(msg.event_id, msg.device_id, msg.site_id, ts_ms, msg.kind, metrics)


# "YYYY-MM-DDTHH:MM" + its offset -> that minute in epoch ms: devices send many records a minute,
# so the calendar is worked out once a minute per offset, not per record (bounded).
_minutes: dict[str, int] = {}
_MAX_CACHED_MINUTES: Final = 4096


def parse_ts(ts: str) -> int:
    """An RFC 3339 time with an offset, in epoch milliseconds (fractions beyond them dropped);
    Rejected naming ``ts`` otherwise. The common layouts (milliseconds, ``Z`` or ``+HH:MM``) are
    read by position after the minute is known valid; anything else takes the full path."""
    n = len(ts)
    if (n == 29 or n == 24) and ts.isascii() and ts[16] == ":" and ts[19] == ".":
        zone = ts[23:]
        if (n == 24 and zone == "Z") or (n == 29 and zone[0] in "+-" and zone[3] == ":"):
            seconds, millis = ts[17:19], ts[20:23]
            if seconds.isdigit() and millis.isdigit() and int(seconds) < 60:
                key = ts[:16] + zone
                base = _minutes.get(key)
                if base is None:
                    base = _minute_ms(ts[:16], zone)
                return base + int(seconds) * 1000 + int(millis)
    return _slow_ts_ms(ts)


def _minute_ms(minute: str, zone: str) -> int:
    base = _slow_ts_ms(f"{minute}:00{zone}")
    if len(_minutes) >= _MAX_CACHED_MINUTES:
        _minutes.clear()
    _minutes[minute + zone] = base
    return base


def _slow_ts_ms(ts: str) -> int:
    if not _ts.search(ts):
        raise Rejected(Reason.SCHEMA_VIOLATION, f"ts: {_short(ts)} is not RFC 3339 with an offset")
    try:
        moment = datetime.fromisoformat(ts)
    except (ValueError, OverflowError) as error:
        raise Rejected(Reason.SCHEMA_VIOLATION, f"ts: not a valid time ({error})") from None
    return (moment - EPOCH) // MILLISECOND


_valid_names: set[str] = set()
_MAX_CACHED_NAMES: Final = 4096


def _remember_valid_name(name: str) -> bool:
    """Check a metric name once; cache it if valid (bounded: a flood of names cannot grow it)."""
    if not _metric_name.search(name):
        return False
    if len(_valid_names) < _MAX_CACHED_NAMES:
        _valid_names.add(name)
    return True


def encode(
    *,
    event_id: str,
    device_id: str,
    site_id: str,
    ts: datetime,
    kind: str,
    metrics: dict[str, float],
) -> bytes:
    """The v1 wire form of one event (what a device publishes)."""
    if ts.tzinfo is None:
        raise ValueError("ts needs a timezone: the contract requires an RFC 3339 offset")
    return msgspec.json.encode(
        TelemetryV1(
            schema=SCHEMA,
            event_id=event_id,
            device_id=device_id,
            site_id=site_id,
            ts=ts.isoformat(timespec="milliseconds"),
            kind=kind,  # type: ignore[arg-type]
            metrics=metrics,
        )
    )


# -- the slow path: name the field ---------------------------------------------------------------

_REQUIRED: Final = ("schema", "event_id", "device_id", "site_id", "ts", "kind", "metrics")
_metric_name = re.compile(METRIC_NAME_PATTERN)
_ts = re.compile(TS_PATTERN)


def explain(raw: bytes, error: msgspec.ValidationError) -> str:
    """The first problem of a record that failed the typed decode, as ``field: what is wrong``."""
    try:
        # The stdlib reads out-of-range numbers as inf where msgspec refuses: it can name them.
        obj = json.loads(raw)
    except ValueError:
        return str(error)
    return first_problem(obj) or str(error)


def first_problem(obj: Any) -> str | None:
    """Check a generic JSON value against telemetry v1; None if it conforms."""
    if not isinstance(obj, dict):
        return f"record: expected a JSON object, got {_json_type(obj)}"
    for name in _REQUIRED:
        if name not in obj:
            return f"{name}: required field missing"
    if obj["schema"] != SCHEMA:
        return f"schema: expected {SCHEMA!r}, got {_short(obj['schema'])}"
    for name, limit in (("event_id", 128), ("device_id", 64), ("site_id", 64)):
        value = obj[name]
        if not isinstance(value, str):
            return f"{name}: expected a string, got {_json_type(value)}"
        if not 1 <= len(value) <= limit:
            return f"{name}: length {len(value)}, expected 1 to {limit}"
    ts = obj["ts"]
    if not isinstance(ts, str):
        return f"ts: expected an RFC 3339 string, got {_json_type(ts)}"
    if not _ts.search(ts):
        return f"ts: {_short(ts)} is not RFC 3339 with an offset"
    if obj["kind"] not in KINDS:
        return f"kind: {_short(obj['kind'])} is not one of {', '.join(KINDS)}"
    return _metrics_problem(obj["metrics"])


def _metrics_problem(metrics: Any) -> str | None:
    if not isinstance(metrics, dict):
        return f"metrics: expected an object, got {_json_type(metrics)}"
    if not 1 <= len(metrics) <= MAX_METRICS:
        return f"metrics: {len(metrics)} entries, expected 1 to {MAX_METRICS}"
    for name, value in metrics.items():
        if not _metric_name.search(name):
            return f"metrics.{_short(name, 40)}: name does not match [a-z][a-z0-9_]{{0,63}}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"metrics.{name}: not a finite number"
        if not math.isfinite(value):
            return f"metrics.{name}: not a finite number"
        if abs(value) > VALUE_LIMIT:
            return f"metrics.{name}: {_short(value, 30)} is outside the accepted range -1e15..1e15"
    return None


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
