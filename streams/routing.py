"""What the hub publishes, and where: contract messages and their partner-topic copies. Pure.

Every KPI result and alert goes to the testbed topic and to ``partner.<region>.*`` of its site's
region only; a site without a known region is never routed to a partner.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from hub import topics
from hub.registry.model import Kpi
from hub.telemetry import Event
from streams.intake import KafkaRecord
from streams.kpi import Judgement, Transition
from streams.snapshot import DemoInfo, SiteInfo
from streams.windows import ClosedWindow

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes
    value: bytes
    # None: the producer partitions by key. A DLQ record goes to the partition numbered like its
    # source (modulo the DLQ's count), so one partition's rejections can be read back in order.
    partition: int | None = None


# A window closing writes its start, end and closing time into every site's message: thousands of
# the same few instants a minute (a fifth of a closing batch's time was spent formatting them).
@functools.lru_cache(maxsize=4096)
def iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def dlq_record(
    *,
    reason: str,
    detail: str,
    record: KafkaRecord,
    received_ms: int,
    hub: str,
    replay: tuple[str, int] | None = None,
) -> Outgoing:
    """A rejected record, with its bytes, key and headers as they arrived. ``origin`` names the
    record's first rejection and ``appended_at`` when the broker first appended it: a record
    sent again by `hub dlq replay` (``replay``: its mark verified) keeps both, so replaying
    twice never multiplies it and its key is the one valid then. A device's own ``hub-*``
    headers are kept as they came, and change nothing."""
    key = record.key
    headers = list(record.headers or ())
    source = f"{record.topic}/{record.partition}/{record.offset}"
    appended = record.timestamp if record.timestamp > 0 else received_ms
    body = {
        "reason": reason,
        "detail": detail,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": None if key is None else key.decode(errors="replace"),
        "value_b64": base64.b64encode(record.value or b"").decode(),
        "received_at": iso(received_ms),
        "hub": hub,
        "headers": [[n, base64.b64encode(v or b"").decode()] for n, v in headers],
        "origin": replay[0] if replay else source,
        "appended_at": iso(replay[1] if replay else appended),
    }
    return Outgoing(topics.DLQ, key or b"", _encode(body), record.partition)


class _Claimed(msgspec.Struct):
    """Whom a rejected record says it is from, read leniently: any field may be missing or
    of the wrong type (the record was refused, perhaps for exactly that)."""

    device_id: Any = None
    site_id: Any = None
    ts: Any = None


_claimed = msgspec.json.Decoder(_Claimed)


def claimed_identity(value: bytes | None) -> tuple[str | None, str | None, int | None]:
    """(device_id, site_id, ts in ms) as a rejected record states them, each None when it
    does not say, or says it in a form no device id, site id or RFC 3339 time takes."""
    try:
        claimed = _claimed.decode(value or b"")
    except (msgspec.DecodeError, ValueError):
        return None, None, None

    def text(v: Any) -> str | None:
        return v if isinstance(v, str) and 0 < len(v) <= 128 and "\x00" not in v else None

    ts_ms = None
    if isinstance(claimed.ts, str):
        try:
            parsed = datetime.fromisoformat(claimed.ts.replace("Z", "+00:00"))
            if parsed.tzinfo is not None:
                ts_ms = int(parsed.timestamp() * 1000)
        except (ValueError, OverflowError):
            ts_ms = None
    return text(claimed.device_id), text(claimed.site_id), ts_ms


def aggregate_message(window: ClosedWindow, site: SiteInfo, closed_ms: int) -> dict[str, Any]:
    acc = window.acc
    p50, p95, p99 = window.quantiles
    return {
        "schema": "site-aggregate/1",
        "site_id": window.site_id,
        "demonstration_id": window.demonstration_id,
        "region": site.region,
        "district": site.district,
        "metric": window.metric,
        "window_start": iso(window.start_ms),
        "window_end": iso(window.end_ms),
        "count": acc.count,
        "sum": acc.sum,
        "min": acc.min,
        "max": acc.max,
        "mean": acc.sum / acc.count,
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "closed_at": iso(closed_ms),
    }


def aggregate_out(message: dict[str, Any]) -> Outgoing:
    return Outgoing(topics.SITE_AGGREGATES, message["site_id"].encode(), _encode(message))


def kpi_result_message(
    demo: DemoInfo,
    kpi: Kpi,
    site_id: str,
    site: SiteInfo,
    judgement: Judgement,
    judged_ms: int,
) -> dict[str, Any]:
    return {
        "schema": "kpi-result/1",
        "demonstration_id": demo.demonstration_id,
        "company": demo.company,
        "title": demo.title,
        "kpi_id": kpi.kpi_id,
        "site_id": site_id,
        "region": site.region,
        "district": site.district,
        "metric": kpi.metric,
        "aggregation": kpi.aggregation,
        "op": kpi.op,
        "threshold": kpi.threshold,
        "kpi_version": kpi.version,
        "window": kpi.window,
        "window_start": iso(judgement.window_start_ms),
        "window_end": iso(judgement.window_end_ms),
        "value": judgement.value,
        "samples": judgement.samples,
        "status": judgement.status,
        "judged_at": iso(judged_ms),
    }


def alert_message(
    demo: DemoInfo,
    kpi: Kpi,
    site_id: str,
    site: SiteInfo,
    judgement: Judgement,
    transition: Transition,
) -> dict[str, Any]:
    return {
        "schema": "kpi-alert/1",
        "alert_id": transition.alert_id,
        "transition": transition.transition,
        "demonstration_id": demo.demonstration_id,
        "company": demo.company,
        "title": demo.title,
        "kpi_id": kpi.kpi_id,
        "site_id": site_id,
        "region": site.region,
        "district": site.district,
        "status": transition.status,
        "previous_status": transition.previous_status,
        "value": judgement.value,
        "threshold": kpi.threshold,
        "window_start": iso(judgement.window_start_ms),
        "window_end": iso(judgement.window_end_ms),
        "ts": iso(judgement.window_end_ms),
    }


def incident_out(event: Event, demonstration_id: str, site: SiteInfo, arrival_ms: int) -> Outgoing:
    """An accepted record of kind ``incident``, for the notifier at once: people are told
    without waiting for its window to close. Keyed by site (one site's incidents in order)."""
    message = {
        "schema": "incident/1",
        "event_id": event.event_id,
        "device_id": event.device_id,
        "site_id": event.site_id,
        "demonstration_id": demonstration_id,
        "region": site.region,
        "district": site.district,
        "ts": iso(event.ts_ms),
        "arrived_at": iso(arrival_ms),
        "metrics": event.metrics,
    }
    return Outgoing(topics.INCIDENTS, event.site_id.encode(), _encode(message))


def routed(testbed_topic: str, dataset: str, message: dict[str, Any]) -> list[Outgoing]:
    """The testbed copy and the copy for the site's region's partners."""
    key = message["site_id"].encode()
    value = _encode(message)
    out = [Outgoing(testbed_topic, key, value)]
    region = message.get("region")
    if region:
        out.append(Outgoing(topics.partner_topic(region, dataset), key, value))
    return out
