"""``hub dlq list | replay``: inspect rejected records, and send them through intake again.

The DLQ topic is read from its start up to its end at the moment of the call. Records are
identified by their origin: where the record was first rejected (topic, partition, offset). A
record rejected twice (a worker re-consumed it after a restart), or rejected again after a replay
(the replayed copy carries its origin and its first append time under the hub's mark,
``hub.signing.replay_headers``, which no device can forge, and its rejection keeps both), appears
once, as its newest rejection. Replay publishes the original bytes, key and headers (the device's
signature; any other ``hub-*`` header the device sent is dropped) to the telemetry topic, so a
record that is now acceptable (after a registry fix, say) is counted once, judged by the key its
device held when the record was first appended: a second replay of the same event is a repeat of
its (``device_id``, ``event_id``), and replaying a still-invalid record twice never multiplies it.
"""

from __future__ import annotations

import base64
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from hub import principals, signing, topics
from hub.db import connect
from hub.db.migrate import migrate
from hub.errors import HubError
from hub.settings import Settings

log = logging.getLogger(__name__)


class BadTime(HubError):
    pass


class DlqRecord(msgspec.Struct, frozen=True):
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    key: str | None
    value_b64: str
    received_at: str
    headers: list[tuple[str, str]] = []  # (name, base64 value), as the record arrived
    origin: str = ""  # "topic/partition/offset" of the first rejection
    hub: str = ""  # which hub rejected it (HUB_APP_ID): hubs sharing a broker share the DLQ
    appended_at: str = ""  # when the broker first appended the record (its key is chosen by it)

    @property
    def source(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)

    @property
    def identity(self) -> str:
        """One rejected record however often it was rejected or replayed."""
        return self.origin or f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        """The record's headers as the device sent them, without any ``hub-*`` header but its
        signature (an earlier replay's mark, or one a device made up)."""
        return [
            (name, base64.b64decode(value))
            for name, value in self.headers
            if name == signing.HEADER or not name.startswith("hub-")
        ]

    @property
    def appended_ms(self) -> int:
        """When the broker first appended it (records rejected before this was kept: when they
        were rejected, the nearest time known)."""
        moment = self.appended_at or self.received_at
        return int(datetime.fromisoformat(moment).timestamp() * 1000)

    @property
    def received(self) -> datetime:
        return datetime.fromisoformat(self.received_at)

    @property
    def value(self) -> bytes:
        return base64.b64decode(self.value_b64)


@dataclass(frozen=True, slots=True)
class DlqEntry:
    """A DLQ record and the original key bytes (the DLQ message's own key, not re-encoded)."""

    record: DlqRecord
    raw_key: bytes | None


@dataclass(frozen=True, slots=True)
class DlqFilter:
    reason: str | None = None
    since: datetime | None = None
    hub: str | None = None  # None: every hub's

    def matches(self, record: DlqRecord) -> bool:
        if self.reason is not None and record.reason != self.reason:
            return False
        if self.hub is not None and record.hub != self.hub:
            return False
        return self.since is None or record.received >= self.since


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An RFC 3339 time, or a duration back from now: ``90s``, ``15m``, ``2h``, ``1d``."""
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return (now or datetime.now(UTC)) - timedelta(**{unit: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadTime(f"--since {text!r}: expected an RFC 3339 time or 90s, 15m, 2h, 1d") from None
    if moment.tzinfo is None:
        raise BadTime(f"--since {text!r}: give a UTC offset (Z or +09:00)")
    return moment


decode = msgspec.json.Decoder(DlqRecord).decode


# How much earlier than ``--since`` reading starts: the hub's clock (a record's ``received_at``)
# and the broker's (its timestamp) may differ between hosts.
SINCE_MARGIN_MS = 300_000


async def read_dlq(
    settings: Settings, since: datetime | None = None, topic: str = topics.DLQ
) -> list[DlqEntry]:
    """Every distinct rejected record currently in the DLQ topic, oldest first; with ``since``,
    those rejected since then (read from the broker's offsets for that time, not from the
    beginning: a week of DLQ is not read to list the last ten minutes). Distinct per hub: hubs
    sharing a broker read the same records and each rejects them on its own."""
    consumer = AIOKafkaConsumer(
        **principals.client(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        start = dict.fromkeys(tps, 0)
        if since is not None:
            at = int(since.timestamp() * 1000) - SINCE_MARGIN_MS
            found = await consumer.offsets_for_times(dict.fromkeys(tps, at))
            start = {tp: end[tp] if o is None else o.offset for tp, o in found.items()}
        for tp in tps:
            consumer.seek(tp, start[tp])  # (seek_to_beginning after assign fetched nothing here)
        newest: dict[tuple[str, str], DlqEntry] = {}
        foreign = 0
        remaining = {tp for tp in tps if end[tp] > start[tp]}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=5000)
            if not batch:
                break
            for tp, messages in batch.items():
                for message in messages:
                    if message.offset >= end[tp]:
                        remaining.discard(tp)
                        break
                    try:
                        record = decode(message.value or b"{}")
                    except msgspec.DecodeError:
                        foreign += 1  # the topic is shared: a producer may write anything
                        continue
                    raw_key = None if record.key is None else message.key
                    identity = (record.hub, record.identity)
                    known = newest.get(identity)
                    if known is None or record.received_at >= known.record.received_at:
                        newest[identity] = DlqEntry(record, raw_key)
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    if foreign:
        log.warning("skipped %d records in %s that are not rejected records", foreign, topic)
    return sorted(newest.values(), key=lambda e: e.record.received_at)


def table(entries: list[DlqEntry]) -> Iterator[str]:
    yield f"{'received_at':24}  {'reason':16}  {'source':>12}  {'key':16}  detail"
    for entry in entries:
        r = entry.record
        source = f"{r.partition}/{r.offset}"
        key = (r.key or "-")[:16]
        yield f"{r.received_at:24}  {r.reason:16}  {source:>12}  {key:16}  {r.detail}"


async def replay_key(settings: Settings) -> bytes:
    """The key of the hub's mark on replayed records (migration 0011)."""
    conn = await connect(settings)
    try:
        await migrate(conn)
        secret = await conn.fetchval("SELECT secret FROM hub_keys WHERE name = 'replay'")
    finally:
        await conn.close()
    return bytes(secret)


async def replay(settings: Settings, entries: list[DlqEntry]) -> Counter[str]:
    """Publish each record's original bytes and key to the telemetry topic again, marked by the
    hub with its origin and first append time."""
    key = await replay_key(settings)
    producer = AIOKafkaProducer(
        **principals.client(settings), enable_idempotence=True, linger_ms=20
    )
    await producer.start()
    sent: Counter[str] = Counter()
    replayed: set[str] = set()
    try:
        for entry in entries:
            record = entry.record
            if record.identity in replayed:
                continue  # hubs sharing the broker each rejected it (``--hub any``): once
            replayed.add(record.identity)
            await producer.send(
                topics.TELEMETRY,
                value=record.value,
                key=entry.raw_key,
                headers=[
                    *record.original_headers,
                    *signing.replay_headers(key, record.identity, record.appended_ms, record.value),
                ],
            )
            sent[record.reason] += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent
