"""One partition's processing step: records in, everything to write and publish out. Pure.

``PartitionProcessor`` chains the pure parts in the order the pipeline reads: intake (validate,
authenticate, registry) -> windows (de-dup, lateness, 1-minute aggregates per demonstration) ->
KPI roll-up and judgement -> routing. It performs no I/O: the runtime writes what a
``BatchResult`` holds (database rows, Kafka records, state-table entries) and only then lets the
partition's offset advance.

Its durable state (``streams.state``) is written so that any durable prefix is consistent. After a
crash the journal rebuilds the open windows and the remembered event ids, so re-consumed records
are recognised as repeats and nothing is counted twice.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from hub import signing
from hub.registry.model import Kpi
from hub.telemetry import Reason, Rejected
from streams import kpi as kpis
from streams import routing, state
from streams.counts import Counts
from streams.intake import KafkaRecord, RegistryMiss, admit
from streams.kpi import KpiState
from streams.kpitable import KpiTable
from streams.outputs import Outputs
from streams.rows import LastSeenRow
from streams.snapshot import DemoInfo, SiteInfo, Snapshot
from streams.state import LEGACY_DEMO, KpiKey, Layout, Progress
from streams.windows import (
    CLOCK_TOLERANCE_MS,
    MINUTE_MS,
    JournalEntry,
    PartitionWindows,
    Verdict,
    event_digest,
    minute_of,
)

log = logging.getLogger(__name__)

JOURNAL_CHUNK: Final = 2000
# site_last_seen is written at most this often per partition (and with every window closed): per
# batch it was an upsert of every site in the batch, for a column read as "reporting within the
# last hour".
LAST_SEEN_EVERY_MS: Final = 5000
# Obsolete journal chunks deleted per batch after a close found them. At 1 Hz a close finds ~550
# a partition (a chunk a batch); deleted in the close (a RocksDB read and delete and a changelog
# record each), they held the worker's loop there, between the partitions' closing writes
# (docs/performance.md, "The journal sweep and the KPI windows in the close").
SWEEP_PER_BATCH: Final = 8
UNKNOWN_SITE: Final = SiteInfo("", "")


@dataclass(frozen=True, slots=True)
class Record:
    """A :class:`KafkaRecord` made of plain values (records read back, tests)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    lateness_ms: int = 120_000
    dedup_horizon_ms: int = 600_000
    # After this long without a record, a partition's event time runs on with the wall clock.
    idle_timeout_ms: int = 30_000
    # Names the hub (HUB_APP_ID) in its DLQ records: hubs sharing a broker share the DLQ topic.
    hub: str = "testbed-hub"
    # Partitions of the telemetry topic: a site's records belong to one of them.
    partitions: int = 12
    clock_tolerance_ms: int = CLOCK_TOLERANCE_MS
    # How far the broker's clock (append times) and the database's (a snapshot's time) may
    # disagree: a record appended this close to a snapshot's reading waits for a newer one.
    registry_clock_margin_ms: int = 5_000
    # The regions whose sites this hub processes (HUB_REGIONS); every region when empty.
    regions: frozenset[str] = frozenset()


@dataclass(slots=True)
class BatchResult(Outputs):
    """Everything one batch or tick produced: its rows and messages (``Outputs``), the sites'
    newest event times, its state-table writes (in order) and its counts."""

    last_seen_rows: list[LastSeenRow] = field(default_factory=list)
    state_writes: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
    # Where processing stopped for a newer registry (an index into the records), if it did.
    resume_at: int | None = None

    @property
    def rows(self) -> int:
        return (
            len(self.aggregate_rows)
            + len(self.kpi_rows)
            + len(self.alert_rows)
            + len(self.last_seen_rows)
            + len(self.device_minute_rows)
            + len(self.rejection_rows)
        )


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class PartitionProcessor:
    def __init__(self, partition: int, config: ProcessorConfig) -> None:
        self.partition = partition
        self.config = config
        self.layout = Layout(partition)
        self.windows = PartitionWindows(
            lateness_ms=config.lateness_ms,
            dedup_horizon_ms=config.dedup_horizon_ms,
            clock_tolerance_ms=config.clock_tolerance_ms,
        )
        self.kpi_states: dict[KpiKey, KpiState] = {}
        self.kpi_table = KpiTable(self.layout)  # the KPI states as written, by group
        # KPI window end -> the states whose open window ends then: judging takes what is due.
        self.due: dict[int, set[KpiKey]] = {}
        self.states_for: str | None = None  # the registry digest the states were laid out for
        self.chunks: dict[int, tuple[int, int]] = {}  # journal seq -> newest (ts, arrival)
        # The journal horizon at the last sweep for obsolete chunks: sweeping every batch cost
        # half the processor's time at small batches (thousands of chunks each time).
        self.swept_at: tuple[int, int] | None = None
        # Chunks found obsolete, gone from ``chunks``, whose deletion is not yet in a batch's
        # state writes: each batch after the sweep deletes up to SWEEP_PER_BATCH of them more
        # than the chunks it writes.
        self.unswept: deque[int] = deque()
        self.next_seq = 0
        # The offset after the last record processed: records below it that Kafka delivers again
        # (offsets are committed after the state, so a crash re-delivers a tail) are skipped.
        self.next_offset = 0
        # When the durable progress record was written (the runtime reads the DLQ from then).
        self.progress_ms = 0
        # The first minute of event time this partition observed: KPI windows start there.
        self.observed_from_ms = 0
        self.last_arrival_ms = 0  # wall clock of the last record (the idle rule)
        self.watermark_at_arrival_ms = 0
        # Newest event time per site not yet written to site_last_seen, and when it last was.
        self.unsent_last_seen: dict[str, int] = {}
        self.last_seen_sent_ms = 0
        # Devices whose newest record was dated ahead of its arrival by more than the tolerance:
        # device -> milliseconds ahead (exported as a metric, dropped when back in line).
        self.clock_ahead: dict[str, int] = {}

    # -- recovery --------------------------------------------------------------------------------

    def owns(self, table_key: bytes) -> bool:
        return self.layout.owns(table_key)

    def start_at(self, offset: int) -> None:
        """Where a partition with no progress of its own starts (the group's committed offset),
        or starts again (its topic was recreated: offsets began anew)."""
        self.next_offset = offset

    def restore(
        self, items: Iterable[tuple[bytes, bytes]], snapshot: Snapshot, now_ms: int
    ) -> None:
        """Rebuild from this partition's state-table entries (after start or a rebalance)."""
        journal: list[tuple[int, list[JournalEntry], bool]] = []
        progress = Progress(0, 0, 0, 0, 0)
        for key, value in items:
            kind, rest = self.layout.kind(key)
            if kind == b"j":
                entries = self._attributed(state.decode_journal(value), snapshot)
                journal.append((int(rest), entries, state.legacy_digests(value)))
            elif kind in (b"K", b"k"):
                self.kpi_table.read(kind, rest, key, value)
            elif kind == b"p":
                progress = state.decode_progress(value)
        self.kpi_states = self.kpi_table.restored()
        self.next_seq = progress.next_seq
        self.next_offset = progress.next_offset
        self.progress_ms = progress.written_ms
        self.observed_from_ms = progress.observed_from_ms
        journal.sort(key=lambda item: item[0])
        for seq, entries, _ in journal:
            self.chunks[seq] = _newest(entries)
            self.next_seq = max(self.next_seq, seq + 1)
        self.windows.restore(
            ((e, legacy) for _, es, legacy in journal for e in es),
            progress.watermark_ms,
            progress.closed_through_ms,
        )
        for kpi_key, kpi_state in self.kpi_states.items():
            kpi = snapshot_kpi(snapshot, kpi_key)
            legacy = kpi_state.merged.pop(LEGACY_DEMO, None)
            if legacy is not None and kpi is not None:
                kpi_state.merged = dict.fromkeys(kpi.inputs, legacy)
            if kpi is not None:
                self._index(kpi_key, kpi_state.window_end_ms(kpi))
            self.kpi_table.remember(kpi_key, state.encode_kpi_state(kpi_state))
        # What a previous owner may not have written yet: the merge keeps the greatest anyway.
        for _, entries, _ in journal:
            self._note_seen(entries)
        # A restart counts as an arrival: the idle clock must not run on from a progress record
        # that may predate the journal's last chunk (only a prefix of the writes may be durable).
        self.last_arrival_ms = now_ms
        self.watermark_at_arrival_ms = self.windows.watermark_ms

    @staticmethod
    def _attributed(entries: list[JournalEntry], snapshot: Snapshot) -> list[JournalEntry]:
        """Journal entries of the first format name no demonstration: at a site with one, it is
        theirs; at a shared site they cannot be attributed and stay under the empty id."""
        if not entries or entries[0].demonstration_id != LEGACY_DEMO:
            return entries
        out = []
        for e in entries:
            demos = snapshot.site_demos.get(e.site_id, ())
            demo = demos[0] if len(demos) == 1 else ""
            out.append(
                JournalEntry(
                    e.site_id, demo, e.ts_ms, e.arrival_ms, e.id_hash, e.metrics, e.device_id
                )
            )
        return out

    # -- processing ------------------------------------------------------------------------------

    def process(
        self,
        records: Sequence[KafkaRecord],
        snapshot: Snapshot,
        now_ms: int,
        *,
        already_rejected: set[int] | None = None,
        registry_final: bool = False,
    ) -> BatchResult:
        """Judge ``records`` in order. A record that names a device, or carries a signature,
        the snapshot may be too old to know (appended after it was read) ends the batch early:
        ``resume_at`` says where, and the runtime calls again with a newer snapshot and
        ``registry_final`` (then its verdict stands). ``already_rejected``: offsets a previous
        owner sent to the DLQ (each is skipped once, and taken out of the set)."""
        result = BatchResult()
        rejected_before = already_rejected if already_rejected is not None else set()
        accepted: list[JournalEntry] = []
        windows = self.windows
        partitions = self.config.partitions
        tolerance = self.config.clock_tolerance_ms
        clock_ahead = self.clock_ahead
        margin = self.config.registry_clock_margin_ms
        for index, record in enumerate(records):
            if record.offset < self.next_offset:
                result.counts.redelivered += 1
                continue
            self.next_offset = record.offset + 1
            if record.offset in rejected_before:
                # A previous owner rejected it and sent it to the DLQ, then lost its progress
                # record (a crash between the two): its verdict stands, once.
                rejected_before.discard(record.offset)
                result.counts.redelivered += 1
                continue
            # The broker's log-append time, never later than now (a forged create time).
            arrival = min(record.timestamp, now_ms) if record.timestamp > 0 else now_ms
            # A record `hub dlq replay` sent again, its mark verified: judged by the key of its
            # first append, and rejected again under its first identity.
            replay = (
                signing.trusted_replay(snapshot.replay_key, record.headers, record.value or b"")
                if len(record.headers or ()) > 1
                else None
            )
            try:
                admitted = admit(
                    record,
                    arrival,
                    snapshot,
                    partitions,
                    replay[1] if replay else None,
                    self.config.regions,
                )
                event = admitted.event
                digest = event_digest(event.device_id, event.event_id)
                if windows.legacy and windows.is_legacy_repeat(event.event_id):
                    verdict = Verdict.DUPLICATE
                else:
                    verdict = windows.judge(event.ts_ms, arrival, digest)
            except RegistryMiss as miss:
                if not registry_final and not snapshot.is_final_for(arrival, margin):
                    # The device or its key may be newer than the snapshot: stop before this
                    # record; the runtime reads the registry again and goes on from here.
                    self.next_offset = record.offset
                    result.resume_at = index
                    break
                self._reject(result, record, miss.reason, miss.detail, now_ms, replay)
                continue
            except Rejected as rejection:
                self._reject(result, record, rejection.reason, rejection.detail, now_ms, replay)
                continue
            except Exception as error:  # a record must never stop the partition
                log.warning(
                    "partition %d offset %d unprocessable: %r",
                    record.partition,
                    record.offset,
                    error,
                )
                detail = f"record: {type(error).__name__} while processing ({error})"[:500]
                self._reject(result, record, Reason.UNPROCESSABLE, detail, now_ms, replay)
                continue
            ahead = event.ts_ms - arrival
            if ahead > tolerance:
                clock_ahead[event.device_id] = ahead
            elif clock_ahead and event.device_id in clock_ahead:
                del clock_ahead[event.device_id]
            if verdict is Verdict.ACCEPTED:
                if not self.observed_from_ms:
                    self._observe(arrival)
                if event.kind == "incident":
                    site = snapshot.sites.get(event.site_id, UNKNOWN_SITE)
                    result.outgoing.append(
                        routing.incident_out(event, admitted.demonstration_id, site, arrival)
                    )
                accepted.append(
                    JournalEntry(
                        event.site_id,
                        admitted.demonstration_id,
                        event.ts_ms,
                        arrival,
                        digest,
                        event.metrics,
                        event.device_id,
                    )
                )
            elif verdict is Verdict.DUPLICATE:
                result.counts.duplicate += 1
            else:
                start = minute_of(event.ts_ms)
                detail = (
                    f"ts: {routing.iso(event.ts_ms)} falls in the window "
                    f"{routing.iso(start)} to {routing.iso(start + MINUTE_MS)}, closed: "
                    f"more than {self.config.lateness_ms // 1000} s behind the partition's "
                    f"event time {routing.iso(windows.watermark_ms)}"
                )
                self._reject(result, record, Reason.LATE, detail, now_ms, replay)
        sites = snapshot.sites
        for site_id, n in Counter(entry.site_id for entry in accepted).items():
            site = sites.get(site_id, UNKNOWN_SITE)
            result.counts.accepted_by_district[(site.region, site.district)] += n
        windows.add_all(accepted)
        self._note_seen(accepted)
        result.counts.accepted += len(accepted)
        if records:
            self.last_arrival_ms = now_ms
            self.watermark_at_arrival_ms = windows.watermark_ms
        written = self._journal(result, accepted)
        self._delete_swept(result, SWEEP_PER_BATCH + written)
        self._close(result, snapshot, now_ms)
        windows.summarise_ahead()
        self._last_seen(result, now_ms)
        return result

    def _observe(self, since_ms: int) -> None:
        """The first minute a partition judges: that of its first record's arrival at the
        broker (or of the wall clock, for one that stayed idle), never a device's own clock: one
        device back-dated by a day must not open a day of empty windows for every site of its
        partition. (Earlier minutes that arrive within the lateness are aggregated, not
        judged; each site's own observation starts with its first report, ``streams.kpi``.)"""
        if not self.observed_from_ms and since_ms:
            self.observed_from_ms = minute_of(since_ms)

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
        its event time runs on from its last record at wall-clock speed (from the processor's
        start, for a partition that never had one), so its windows close and silent sites are
        judged without waiting for a record."""
        result = BatchResult()
        idle_ms = now_ms - self.last_arrival_ms
        if idle_ms < self.config.idle_timeout_ms:
            self._last_seen(result, now_ms)
            return result
        base = self.watermark_at_arrival_ms or self.last_arrival_ms
        # Never past the wall clock: a partition whose last events were dated ahead of it waits
        # for the wall clock to catch up.
        self.windows.advance(min(base + idle_ms, now_ms))
        self._observe(self.windows.watermark_ms)
        self._delete_swept(result, SWEEP_PER_BATCH)
        self._close(result, snapshot, now_ms)
        self._last_seen(result, now_ms)
        return result

    def _reject(
        self,
        result: BatchResult,
        record: KafkaRecord,
        reason: str,
        detail: str,
        now_ms: int,
        replay: tuple[str, int] | None = None,
    ) -> None:
        result.counts.rejected[reason] += 1
        result.rejection(record, reason, detail, now_ms)
        result.outgoing.append(
            routing.dlq_record(
                reason=reason,
                detail=detail,
                record=record,
                received_ms=now_ms,
                hub=self.config.hub,
                replay=replay,
            )
        )

    def _journal(self, result: BatchResult, accepted: list[JournalEntry]) -> int:
        """The accepted entries written as journal chunks; returns how many."""
        for start in range(0, len(accepted), JOURNAL_CHUNK):
            chunk = accepted[start : start + JOURNAL_CHUNK]
            seq = self.next_seq
            self.next_seq += 1
            self.chunks[seq] = _newest(chunk)
            result.state_writes.append((self.layout.journal(seq), state.encode_journal(chunk)))
        return -(-len(accepted) // JOURNAL_CHUNK)

    # -- windows closed: aggregates, KPI judgement ----------------------------------------------

    def _close(self, result: BatchResult, snapshot: Snapshot, now_ms: int) -> None:
        """Close the windows due, merge them into their KPI states, judge the KPI windows due,
        and write the partition's state (journal tombstones, KPI states, progress)."""
        dirty: set[KpiKey] = set()
        released: set[KpiKey] = set()
        self._lay_out_states(snapshot, dirty, released)
        closed = self.windows.close_due()
        for minute in self.windows.take_devices():
            result.device_minute(minute)
        for window in closed:
            result.window(window, snapshot.sites.get(window.site_id, UNKNOWN_SITE), now_ms)
            for kpi in snapshot.kpi_inputs.get((window.demonstration_id, window.metric), ()):
                key = (window.demonstration_id, kpi.kpi_id, window.site_id)
                kpi_state = self.kpi_states.get(key)
                if kpi_state is None:
                    continue
                self._judge_until(result, key, kpi, kpi_state, snapshot, now_ms, window.start_ms)
                if key not in self.kpi_states:
                    released.add(key)
                    continue
                before = kpi_state.window_start_ms
                earliest = self._earliest_report(snapshot, window.demonstration_id)
                merged = kpis.merge_minute(
                    kpi_state, kpi, window.metric, window.start_ms, window.acc, earliest
                )
                if kpi_state.window_start_ms != before:  # the site's first report came earlier
                    self._unindex(key)
                    self._index(key, kpi_state.window_end_ms(kpi))
                if merged or kpi_state.window_start_ms != before:
                    dirty.add(key)
        through = self.windows.closed_through_ms
        for end in sorted(e for e in self.due if e <= through):
            for key in sorted(self.due.pop(end)):
                kpi_state = self.kpi_states.get(key)
                due_kpi = snapshot_kpi(snapshot, key)
                if kpi_state is None or due_kpi is None:
                    continue
                self._judge_until(result, key, due_kpi, kpi_state, snapshot, now_ms, through)
                (dirty if key in self.kpi_states else released).add(key)
        result.counts.windows_closed += len(closed)
        changed = ((key, state.encode_kpi_state(self.kpi_states[key])) for key in dirty - released)
        result.state_writes.extend(self.kpi_table.write(changed, released))
        self._sweep_journal(result)
        progress = Progress(
            self.windows.watermark_ms,
            self.windows.closed_through_ms,
            self.next_seq,
            self.next_offset,
            now_ms,
            self.observed_from_ms,
        )
        result.state_writes.append((self.layout.progress, state.encode_progress(progress)))

    def _sweep_journal(self, result: BatchResult) -> None:
        """Find the journal chunks no longer needed, when the horizon has moved (a chunk
        written since the last sweep was needed then: its windows open, its ids fresh), and
        leave their deletion to the batches after this one. A batch deletes up to
        ``SWEEP_PER_BATCH`` more than it writes, whatever its size: the chunks waiting never
        outgrow what the journal held before the sweep."""
        horizon = self.windows.journal_horizon()
        if horizon == self.swept_at:
            return
        self.swept_at = horizon
        obsolete = self.windows.journal_is_obsolete
        for seq in [s for s, (ts, arrival) in self.chunks.items() if obsolete(ts, arrival)]:
            del self.chunks[seq]
            self.unswept.append(seq)

    def _delete_swept(self, result: BatchResult, most: int) -> None:
        """Up to ``most`` obsolete chunks deleted in this batch's state writes, oldest first.
        One left undeleted by a crash is read back at the restore and found obsolete again."""
        unswept = self.unswept
        for _ in range(min(most, len(unswept))):
            result.state_writes.append((self.layout.journal(unswept.popleft()), None))

    def _earliest_report(self, snapshot: Snapshot, demonstration_id: str) -> int:
        """How far back a site's first report may start its observation: minutes that could
        still arrive on time when the partition began observing, inside the period."""
        demo = snapshot.demonstrations.get(demonstration_id)
        start = demo.starts_ms if demo is not None else 0
        return max(start, self.observed_from_ms - self.config.lateness_ms - MINUTE_MS)

    def _lay_out_states(
        self, snapshot: Snapshot, dirty: set[KpiKey], released: set[KpiKey]
    ) -> None:
        """A KPI state for every (demonstration, KPI, site) of the partition, whether the site
        reports or not; none for what the registry no longer holds. Once per registry."""
        if self.states_for == snapshot.digest or not self.observed_from_ms:
            return
        self.states_for = snapshot.digest
        wanted: dict[KpiKey, tuple[Kpi, DemoInfo]] = {}
        regions = self.config.regions
        for site_id in snapshot.sites_on(self.partition, self.config.partitions):
            if regions and snapshot.sites[site_id].region not in regions:
                continue  # another region's hub judges it
            for demo_id in snapshot.site_demos.get(site_id, ()):
                demo = snapshot.demonstrations[demo_id]
                for kpi in demo.kpis:
                    wanted[(demo_id, kpi.kpi_id, site_id)] = (kpi, demo)
        for key in [k for k in self.kpi_states if k not in wanted]:
            self._unindex(key)
            del self.kpi_states[key]
            released.add(key)
        # States made now observe from what is not closed yet (all of it, on a fresh partition).
        observed = max(self.observed_from_ms, self.windows.closed_through_ms)
        for key, (kpi, demo) in wanted.items():
            if key in self.kpi_states or demo.ends_ms <= observed:
                continue
            first = kpis.first_window(observed, demo.starts_ms, kpi)
            self.kpi_states[key] = KpiState(first, max(observed, first))
            self._index(key, first + kpi.window_s * 1000)
            dirty.add(key)

    def _index(self, key: KpiKey, end_ms: int) -> None:
        self.due.setdefault(end_ms, set()).add(key)

    def _unindex(self, key: KpiKey) -> None:
        for keys in self.due.values():
            keys.discard(key)

    def _judge_until(
        self,
        result: BatchResult,
        key: KpiKey,
        kpi: Kpi,
        kpi_state: KpiState,
        snapshot: Snapshot,
        now_ms: int,
        until_ms: int,
    ) -> None:
        """Judge every window of this KPI state that ends at or before ``until_ms``: inside the
        demonstration's period only; the state goes once the period has ended."""
        demo_id, _, site_id = key
        demo = snapshot.demonstrations.get(demo_id)
        end = kpi_state.window_end_ms(kpi)
        if demo is None or end > until_ms:
            return
        self.due.get(end, set()).discard(key)
        site = snapshot.sites.get(site_id, UNKNOWN_SITE)
        while end <= until_ms:
            if kpi_state.window_start_ms >= demo.ends_ms:
                del self.kpi_states[key]
                return
            if demo.judges(kpi_state.window_start_ms, end):
                # Judged by the KPI's version valid when the window started.
                judged_by = demo.kpi_at(kpi, kpi_state.window_start_ms)
                self._judged(result, key, demo, judged_by, kpi_state, site, now_ms)
            else:
                kpis.skip(kpi_state, kpi, end)
            end = kpi_state.window_end_ms(kpi)
        self._index(key, end)

    def _judged(
        self,
        result: BatchResult,
        key: KpiKey,
        demo: DemoInfo,
        kpi: Kpi,
        kpi_state: KpiState,
        site: SiteInfo,
        now_ms: int,
    ) -> None:
        demo_id, _, site_id = key
        judgement, transition = kpis.close_window(demo_id, kpi, site_id, kpi_state)
        result.judgement(demo, kpi, site_id, site, judgement, now_ms)
        result.counts.kpi[judgement.status] += 1
        if transition is not None:
            result.alert(demo, kpi, site_id, site, judgement, transition)
            result.counts.alerts[transition.transition] += 1


def snapshot_kpi(snapshot: Snapshot, key: KpiKey) -> Kpi | None:
    demo = snapshot.demonstrations.get(key[0])
    if demo is None:
        return None
    return next((k for k in demo.kpis if k.kpi_id == key[1]), None)


def _newest(entries: Sequence[JournalEntry]) -> tuple[int, int]:
    return max(e.ts_ms for e in entries), max(e.arrival_ms for e in entries)
