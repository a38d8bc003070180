"""One partition's processing step: records in, everything to write and publish out. Pure.

``PartitionProcessor`` chains the pure parts in the order the pipeline reads: intake (validate,
registry) -> windows (de-dup, lateness, 1-minute aggregates) -> KPI roll-up and judgement ->
routing. It performs no I/O: the Faust agent writes what a ``BatchResult`` holds (database rows,
Kafka records, state-table entries) and only then lets the partition's offset advance.

Its durable state is one Faust table (one changelog topic), written in an order that makes any
durable prefix consistent: journal chunks of accepted events, then KPI states, then the progress
record. After a crash the journal rebuilds the open windows and the remembered event ids, so
re-consumed records are recognised as repeats and nothing is counted twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol

import msgspec

from hub import topics
from hub.registry.model import Kpi
from hub.telemetry import Reason, Rejected
from streams import kpi as kpis
from streams import routing
from streams.intake import admit
from streams.kpi import KpiState
from streams.registry import SiteInfo, SiteKpi, Snapshot
from streams.routing import Outgoing
from streams.sink import AggregateRow, AlertRow, KpiRow, LastSeenRow
from streams.windows import (
    MINUTE_MS,
    Acc,
    ClosedWindow,
    JournalEntry,
    PartitionWindows,
    Verdict,
    decode_sketch,
    encode_sketch,
    id_hash,
)

JOURNAL_CHUNK: Final = 2000
# site_last_seen is written at most this often per partition (and with every window closed): per
# batch it was an upsert of every site in the batch, ~90 database round trips a second for a
# worker catching up, for a column read as "reporting within the last hour".
LAST_SEEN_EVERY_MS: Final = 5000
UNKNOWN_SITE: Final = SiteInfo("", "")
_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder().decode


class KafkaRecord(Protocol):
    """A Kafka record as it arrived: where from, and its bytes untouched. Faust's messages and
    aiokafka's records are ones already; the worker hands them over as they are."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Record:
    """A :class:`KafkaRecord` made of plain values (records read back, tests)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    lateness_ms: int = 120_000
    dedup_horizon_ms: int = 600_000
    # After this long without a record, a partition's event time runs on with the wall clock.
    idle_timeout_ms: int = 30_000
    # Names the hub (HUB_APP_ID) in its DLQ records: hubs sharing a broker share the DLQ topic.
    hub: str = "testbed-hub"


@dataclass(slots=True)
class BatchResult:
    outgoing: list[Outgoing] = field(default_factory=list)
    aggregate_rows: list[AggregateRow] = field(default_factory=list)
    kpi_rows: list[KpiRow] = field(default_factory=list)
    alert_rows: list[AlertRow] = field(default_factory=list)
    last_seen_rows: list[LastSeenRow] = field(default_factory=list)
    state_writes: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    # (event time, arrival time) of each accepted event, for latency metrics.
    event_times_ms: list[int] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return (
            len(self.aggregate_rows)
            + len(self.kpi_rows)
            + len(self.alert_rows)
            + len(self.last_seen_rows)
        )


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class PartitionProcessor:
    def __init__(self, partition: int, config: ProcessorConfig) -> None:
        self.partition = partition
        self.config = config
        self.windows = PartitionWindows(
            lateness_ms=config.lateness_ms, dedup_horizon_ms=config.dedup_horizon_ms
        )
        self.kpi_states: dict[tuple[str, str, str], KpiState] = {}
        self.chunks: dict[int, int] = {}  # journal seq -> newest event time in it
        self.next_seq = 0
        # The offset after the last record processed: records below it that Kafka delivers again
        # (offsets are committed after the state, so a crash re-delivers a tail) are skipped.
        self.next_offset = 0
        # When the durable progress record was written, and the offsets from ``next_offset`` on
        # that a previous owner already sent to the DLQ (read back by the runtime after restore).
        self.progress_ms = 0
        self.rejected_before: set[int] = set()
        self.last_arrival_ms = 0
        self.watermark_at_arrival_ms = 0
        # Newest event time per site not yet written to site_last_seen, and when it last was.
        self.unsent_last_seen: dict[str, int] = {}
        self.last_seen_sent_ms = 0
        self.prefix = f"{partition}|".encode()

    # -- keys of the state table ---------------------------------------------------------------

    def _journal_key(self, seq: int) -> bytes:
        return self.prefix + b"j|" + f"{seq:012d}".encode()

    def _kpi_key(self, key: tuple[str, str, str]) -> bytes:
        return self.prefix + b"k|" + "|".join(key).encode()

    @property
    def _progress_key(self) -> bytes:
        return self.prefix + b"p"

    # -- recovery --------------------------------------------------------------------------------

    def owns(self, table_key: bytes) -> bool:
        return table_key.startswith(self.prefix)

    def restore(self, items: Iterable[tuple[bytes, bytes]], now_ms: int) -> None:
        """Rebuild from this partition's state-table entries (after start or a rebalance)."""
        journal: list[tuple[int, list[JournalEntry]]] = []
        watermark = closed = 0
        for key, value in items:
            kind, _, rest = key[len(self.prefix) :].partition(b"|")
            if kind == b"j":
                entries = [JournalEntry(s, t, h, m) for s, t, h, m in _unpack(value)]
                journal.append((int(rest), entries))
            elif kind == b"k":
                demo, kpi_id, site = rest.decode().split("|", 2)
                self.kpi_states[(demo, kpi_id, site)] = _decode_kpi_state(value)
            elif kind == b"p":
                # Later fields may be added to the progress record: read the ones known here.
                progress = _unpack(value)
                watermark, closed, self.next_seq = progress[:3]
                self.next_offset = progress[3] if len(progress) > 3 else 0
                self.progress_ms = progress[4] if len(progress) > 4 else 0
        journal.sort(key=lambda item: item[0])
        for seq, entries in journal:
            self.chunks[seq] = max((e.ts_ms for e in entries), default=0)
            self.next_seq = max(self.next_seq, seq + 1)
        self.windows.restore((e for _, es in journal for e in es), watermark, closed)
        # What a previous owner may not have written yet: the merge keeps the greatest anyway.
        for _, entries in journal:
            self._note_seen(entries)
        # A restart counts as an arrival: the idle clock must not run on from a progress record
        # that may predate the journal's last chunk (only a prefix of the writes may be durable).
        self.last_arrival_ms = now_ms
        self.watermark_at_arrival_ms = self.windows.watermark_ms

    # -- processing ------------------------------------------------------------------------------

    def process(
        self, records: Sequence[KafkaRecord], snapshot: Snapshot, now_ms: int
    ) -> BatchResult:
        result = BatchResult()
        accepted: list[JournalEntry] = []
        windows = self.windows
        devices = snapshot.devices
        for record in records:
            if record.offset < self.next_offset:
                result.counts["redelivered"] += 1
                continue
            self.next_offset = record.offset + 1
            if record.offset in self.rejected_before:
                # A previous owner rejected it and sent it to the DLQ, then lost its progress
                # record (a crash between the two): its verdict stands, once.
                self.rejected_before.discard(record.offset)
                result.counts["redelivered"] += 1
                continue
            try:
                event = admit(record.value, record.key, now_ms, devices)
            except Rejected as rejection:
                self._reject(result, record, rejection.reason, rejection.detail, now_ms)
                continue
            digest = id_hash(event.event_id)
            verdict = windows.offer(event, digest)
            if verdict is Verdict.ACCEPTED:
                accepted.append(JournalEntry(event.site_id, event.ts_ms, digest, event.metrics))
                result.event_times_ms.append(event.ts_ms)
            elif verdict is Verdict.DUPLICATE:
                result.counts["duplicate"] += 1
            else:
                start = event.ts_ms - event.ts_ms % MINUTE_MS
                detail = (
                    f"ts: {routing.iso(event.ts_ms)} falls in the window "
                    f"{routing.iso(start)} to {routing.iso(start + MINUTE_MS)}, closed: "
                    f"more than {self.config.lateness_ms // 1000} s behind the partition's "
                    f"event time {routing.iso(windows.watermark_ms)}"
                )
                self._reject(result, record, Reason.LATE, detail, now_ms)
        sites = snapshot.sites
        for site_id, n in Counter(entry.site_id for entry in accepted).items():
            site = sites.get(site_id, UNKNOWN_SITE)
            result.counts[f"accepted:{site.region}:{site.district}"] += n
        self._note_seen(accepted)
        result.counts["accepted"] += len(accepted)
        if records:
            self.last_arrival_ms = now_ms
            self.watermark_at_arrival_ms = windows.watermark_ms
        self._journal(result, accepted)
        self._close(result, windows.close_due(), snapshot, now_ms)
        self._last_seen(result, now_ms)
        return result

    def _note_seen(self, entries: Iterable[JournalEntry]) -> None:
        unsent = self.unsent_last_seen
        for entry in entries:
            if entry.ts_ms > unsent.get(entry.site_id, 0):
                unsent[entry.site_id] = entry.ts_ms

    def take_last_seen(self) -> list[LastSeenRow]:
        """Everything held back, now: the partition is about to go (a stop, a rebalance)."""
        rows = [LastSeenRow(s, _dt(ts)) for s, ts in sorted(self.unsent_last_seen.items())]
        self.unsent_last_seen = {}
        return rows

    def _last_seen(self, result: BatchResult, now_ms: int) -> None:
        """Sites' newest event times, when due: every LAST_SEEN_EVERY_MS or with closed windows
        (a database write anyway). A crash loses nothing: restore notes the journal again."""
        if not self.unsent_last_seen:
            return
        if now_ms - self.last_seen_sent_ms < LAST_SEEN_EVERY_MS and not result.aggregate_rows:
            return
        result.last_seen_rows = self.take_last_seen()
        self.last_seen_sent_ms = now_ms

    def tick(self, snapshot: Snapshot, now_ms: int) -> BatchResult:
        """The wall-clock rule for an idle partition: once nothing arrived for the idle timeout,
        its event time runs on from its last record at wall-clock speed, so its windows close
        and its KPIs are judged (no_data) without waiting for a silent site's next record."""
        result = BatchResult()
        idle_ms = now_ms - self.last_arrival_ms
        if idle_ms < self.config.idle_timeout_ms:
            self._last_seen(result, now_ms)
            return result
        # Never past the wall clock: a partition whose last events were dated ahead of it (clock
        # skew within the allowed 5 minutes) waits for the wall clock to catch up.
        self.windows.advance(min(self.watermark_at_arrival_ms + idle_ms, now_ms))
        self._close(result, self.windows.close_due(), snapshot, now_ms)
        self._last_seen(result, now_ms)
        return result

    def _reject(
        self, result: BatchResult, record: KafkaRecord, reason: str, detail: str, now_ms: int
    ) -> None:
        result.counts[f"rejected:{reason}"] += 1
        result.outgoing.append(
            routing.dlq_record(
                reason=reason,
                detail=detail,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                value=record.value,
                received_ms=now_ms,
                hub=self.config.hub,
            )
        )

    def _journal(self, result: BatchResult, accepted: list[JournalEntry]) -> None:
        for start in range(0, len(accepted), JOURNAL_CHUNK):
            chunk = accepted[start : start + JOURNAL_CHUNK]
            seq = self.next_seq
            self.next_seq += 1
            self.chunks[seq] = max(e.ts_ms for e in chunk)
            value = _pack([(e.site_id, e.ts_ms, e.id_hash, e.metrics) for e in chunk])
            result.state_writes.append((self._journal_key(seq), value))

    def _close(
        self, result: BatchResult, closed: list[ClosedWindow], snapshot: Snapshot, now_ms: int
    ) -> None:
        dirty: set[tuple[str, str, str]] = set()
        for window in closed:
            site = snapshot.sites.get(window.site_id, UNKNOWN_SITE)
            message = routing.aggregate_message(window, site, now_ms)
            result.outgoing.append(routing.aggregate_out(message))
            acc = window.acc
            result.aggregate_rows.append(
                AggregateRow(
                    _dt(window.start_ms),
                    window.site_id,
                    window.metric,
                    acc.count,
                    acc.sum,
                    acc.min,
                    acc.max,
                    message["p50"],
                    message["p95"],
                    message["p99"],
                )
            )
            for site_kpi in snapshot.kpis_for(window.site_id, window.metric):
                key, state = self._kpi_state(site_kpi, window.site_id, window.start_ms)
                self._judge_until(
                    result, key, site_kpi.kpi, state, snapshot, now_ms, until_ms=window.start_ms
                )
                if kpis.merge_minute(state, window.start_ms, acc):
                    dirty.add(key)
        closed_through = self.windows.closed_through_ms
        kpi_by_key = (
            {
                (sk.demonstration_id, sk.kpi.kpi_id, site_id): sk.kpi
                for site_id, site_kpis in snapshot.kpis_by_site.items()
                for sk in site_kpis
            }
            if self.kpi_states
            else {}
        )
        for key, state in self.kpi_states.items():
            kpi = kpi_by_key.get(key)
            if kpi is not None and self._judge_until(
                result, key, kpi, state, snapshot, now_ms, until_ms=closed_through
            ):
                dirty.add(key)
        result.counts["windows_closed"] += len(closed)
        for key in sorted(dirty):
            result.state_writes.append(
                (self._kpi_key(key), _encode_kpi_state(self.kpi_states[key]))
            )
        for seq in [
            s for s, newest in self.chunks.items() if self.windows.journal_is_obsolete(newest)
        ]:
            del self.chunks[seq]
            result.state_writes.append((self._journal_key(seq), None))
        progress = (
            self.windows.watermark_ms,
            self.windows.closed_through_ms,
            self.next_seq,
            self.next_offset,
            now_ms,
        )
        result.state_writes.append((self._progress_key, _pack(progress)))

    def _kpi_state(
        self, site_kpi: SiteKpi, site_id: str, minute_ms: int
    ) -> tuple[tuple[str, str, str], KpiState]:
        key = (site_kpi.demonstration_id, site_kpi.kpi.kpi_id, site_id)
        state = self.kpi_states.get(key)
        if state is None:
            start = kpis.window_start(minute_ms, site_kpi.kpi)
            state = self.kpi_states[key] = KpiState(
                window_start_ms=start, observed_from_ms=minute_ms
            )
        return key, state

    def _judge_until(
        self,
        result: BatchResult,
        key: tuple[str, str, str],
        kpi: Kpi,
        state: KpiState,
        snapshot: Snapshot,
        now_ms: int,
        *,
        until_ms: int,
    ) -> bool:
        """Judge every window of this KPI state that ends at or before ``until_ms``."""
        judged = False
        demo, _, site_id = key
        site = snapshot.sites.get(site_id, UNKNOWN_SITE)
        while state.window_start_ms + kpi.window_s * 1000 <= until_ms:
            judgement, transition = kpis.close_window(demo, kpi, site_id, state)
            judged = True
            message = routing.kpi_result_message(demo, kpi, site_id, site, judgement, now_ms)
            result.outgoing.extend(routing.routed(topics.KPI_RESULTS, "kpi-results", message))
            result.kpi_rows.append(
                KpiRow(
                    _dt(judgement.window_start_ms),
                    _dt(judgement.window_end_ms),
                    demo,
                    site_id,
                    kpi.kpi_id,
                    judgement.value,
                    kpi.threshold,
                    judgement.status,
                    judgement.samples,
                )
            )
            result.counts[f"kpi:{judgement.status}"] += 1
            if transition is not None:
                alert = routing.alert_message(demo, kpi, site_id, site, judgement, transition)
                result.outgoing.extend(routing.routed(topics.KPI_ALERTS, "kpi-alerts", alert))
                result.alert_rows.append(
                    AlertRow(
                        transition.alert_id,
                        _dt(judgement.window_end_ms),
                        demo,
                        site_id,
                        kpi.kpi_id,
                        transition.transition,
                        judgement.value,
                        kpi.threshold,
                        "resolved" if transition.transition == "recovered" else "open",
                    )
                )
                result.counts[f"alert:{transition.transition}"] += 1
        return judged


def _encode_kpi_state(state: KpiState) -> bytes:
    acc = state.acc
    sketch = encode_sketch(acc.sketch) if acc.count else b""
    return _pack(
        (
            state.window_start_ms,
            state.merged_through_ms,
            acc.count,
            acc.sum,
            acc.min,
            acc.max,
            sketch,
            state.minutes_up,
            state.last_status,
            state.open_alert,
            state.observed_from_ms,
        )
    )


def _decode_kpi_state(raw: bytes) -> KpiState:
    (
        start,
        merged,
        count,
        total,
        low,
        high,
        sketch,
        minutes_up,
        last,
        open_alert,
        observed_from,
    ) = _unpack(raw)
    acc = Acc(count, total, low, high)
    if sketch:
        acc.sketch = decode_sketch(sketch)
    return KpiState(start, merged, acc, minutes_up, last, open_alert, observed_from)
