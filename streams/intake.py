"""Intake: a raw Kafka record in, an accepted ``Event`` or a ``Rejected`` with its reason out.

Pure: the record, its arrival time and the registry snapshot are passed in. The rules, in order:
the message itself (size, JSON, schema, clock), the device (registered, signed with its own key),
where it claims to be (its registered site, the record key, the site's partition) and what it
reports (only the metrics its demonstration declares: a device cannot open windows at will).
Lateness is judged later, by the windows, which know the partition's event-time watermark.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

from hub import signing, telemetry
from hub.telemetry import Event, Reason, Rejected
from streams.snapshot import KeySpan, Snapshot


class KafkaRecord(Protocol):
    """A Kafka record as it arrived: where from, when, and its bytes untouched. aiokafka's
    records are ones already; the worker hands them over as they are."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class RegistryMiss(Rejected):
    """A rejection a newer registry could overturn: the device, or the key it signed with, may
    have been registered or issued after the snapshot was read. The processor stops there, and
    the runtime reads the registry again before judging the record (``Snapshot.as_of_ms``)."""


class Admitted(NamedTuple):
    """An accepted record's event and its device's demonstration (a tuple: made per record)."""

    event: Event
    demonstration_id: str


def admit(
    record: KafkaRecord,
    arrival_ms: int,
    snapshot: Snapshot,
    partitions: int,
    appended_ms: int | None = None,
    regions: frozenset[str] = frozenset(),
) -> Admitted:
    """Decode, validate and check one record against the registry; raise Rejected otherwise.
    ``appended_ms``: when the broker first appended it (a replay's original time), by which its
    key is chosen; its arrival otherwise. ``regions``: those whose sites this hub processes
    (a regional hub of a federation), every region when empty."""
    value = record.value or b""
    event = telemetry.decode(value, arrival_ms)
    device = snapshot.devices.get(event.device_id)
    if device is None:
        raise RegistryMiss(
            Reason.UNKNOWN_DEVICE, f"device_id: {event.device_id!r} is not registered"
        )
    presented = signing.presented(record.headers)
    if presented is None:
        raise Rejected(
            Reason.UNAUTHENTICATED, f"headers: no {signing.HEADER} (records are signed by device)"
        )
    authenticate(event.device_id, device.keys, value, presented, appended_ms or arrival_ms)
    if device.site_id != event.site_id:
        raise Rejected(
            Reason.SITE_MISMATCH,
            f"site_id: device {event.device_id} is registered at {device.site_id}, "
            f"not {event.site_id}",
        )
    key = record.key
    if key is None or key != event.site_id.encode():
        shown = "none" if key is None else repr(key.decode(errors="replace"))
        raise Rejected(Reason.SITE_MISMATCH, f"key: {shown} is not the site_id {event.site_id!r}")
    expected = snapshot.partition_of(event.site_id, partitions)
    if record.partition != expected:
        raise Rejected(
            Reason.WRONG_PARTITION,
            f"partition: {record.partition}, but site {event.site_id} belongs to partition "
            f"{expected} (Kafka's default murmur2 partitioner; librdkafka: "
            "partitioner=murmur2_random)",
        )
    if regions:
        site = snapshot.sites.get(event.site_id)
        region = site.region if site is not None else "unknown"
        if region not in regions:
            raise Rejected(
                Reason.SITE_MISMATCH,
                f"site_id: {event.site_id} is in region {region}; this hub processes "
                f"{', '.join(sorted(regions))} only (a region's devices publish to its own "
                "cluster: docs/federation.md)",
            )
    demo = snapshot.demonstrations.get(device.demonstration_id)
    if demo is not None:
        if not demo.active_at(event.ts_ms):
            raise Rejected(
                Reason.NOT_ACTIVE,
                f"ts: {iso_ms(event.ts_ms)} is outside the active period of demonstration "
                f"{demo.demonstration_id} ({iso_ms(demo.starts_ms)} to {iso_ms(demo.ends_ms)}, "
                f"{demo.status}): only active demonstrations' records are counted",
            )
        for name in event.metrics:
            if name not in demo.metrics:
                raise Rejected(
                    Reason.UNDECLARED_METRIC,
                    f"metrics.{name}: not declared by demonstration {demo.demonstration_id}",
                )
    return Admitted(event, device.demonstration_id)


def authenticate(
    device_id: str, keys: Sequence[KeySpan], value: bytes, presented: bytes, appended_ms: int
) -> None:
    """The record is signed with the key the device held when the broker appended it: a key
    issued at T signs records appended from T on; a rotated or revoked key still signs what was
    appended before."""
    valid = [span for span in keys if span.covers(appended_ms)]
    for span in valid:
        if signing.verify(span.secret, value, presented):
            return
    when = iso_ms(appended_ms)
    if not valid:
        raise RegistryMiss(
            Reason.UNAUTHENTICATED,
            f"{signing.HEADER}: device {device_id} held no valid key when the record was "
            f"appended ({when}): none issued yet, or revoked",
        )
    raise RegistryMiss(
        Reason.UNAUTHENTICATED,
        f"{signing.HEADER}: not signed with the key device {device_id} held when the record "
        f"was appended ({when})",
    )


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
