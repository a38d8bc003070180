"""The notifier (`hub notify serve`): reads KPI alerts and incidents from Kafka and platform alerts
from Alertmanager's webhook, and delivers each to the receivers whose scope covers it.

Nothing read is lost: notices are written to the outbox (one row per receiver) before the Kafka
offsets are committed or Alertmanager gets its 200, and rows leave the outbox only once
delivered, retried with backoff until then. Ids make every step repeatable: a notice read twice,
or sent again by Alertmanager, is delivered once. A new consumer group starts at the topics' end:
a first start does not replay history to people.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Final

import aiohttp
import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, generate_latest

from hub import principals, topics, topicsetup
from hub.db import create_pool
from hub.db.migrate import migrate
from hub.metrics import NotifyMetrics, notify_metrics
from hub.notify import model, send, store
from hub.settings import Settings

log = logging.getLogger(__name__)

BATCH: Final = 50  # outbox rows claimed at a time
LEASE_S: Final = 60.0  # how long a claimed row is held while it is being sent
IDLE_POLL_S: Final = 1.0  # how often the outbox is checked when nothing woke the sender
ESCALATION_EVERY_S: Final = 30.0
COMPANIES_EVERY_S: Final = 60.0


def arrival_s(text: object) -> float:
    """An incident's arrival at the broker (RFC 3339), in epoch seconds; now if unreadable."""
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return time.time()


class Notifier:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics: NotifyMetrics = notify_metrics(self.registry)
        self.wake = asyncio.Event()
        self.limiter = model.IncidentLimiter(
            settings.notify_incident_burst, settings.notify_incident_per_hour
        )
        self.guard = send.AddressGuard(settings.notify_allow_networks)
        self.companies: dict[str, str] = {}
        self.companies_at = 0.0
        self.pool: asyncpg.Pool | None = None
        # Set once the consumer holds its partitions and positions: from then on nothing
        # published is skipped (a new group starts at the end). /healthz answers 503 before.
        self.consuming = False

    # -- reading -----------------------------------------------------------------------------

    async def notices_of(self, topic: str, value: bytes) -> list[model.Notice]:
        """The notice a record makes: none for one that is not what the hub writes (counted),
        or for an incident over its device's rate (counted; the next one says so)."""
        kind: model.Kind = "kpi_alert" if topic == topics.KPI_ALERTS else "incident"
        try:
            message, fields = model.parse(kind, value)
        except model.BadMessage as error:
            self.metrics.skipped.labels(topic).inc()
            log.warning("skipped a record of %s that is not what the hub writes: %s", topic, error)
            return []
        company = (await self.company_map()).get(fields.demonstration_id)
        if kind == "kpi_alert":
            return [model.from_kpi_alert(message, company)]
        allowed, held = self.limiter.allow(fields.device_id, arrival_s(fields.arrived_at))
        if not allowed:
            self.metrics.incidents_held.inc()
            return []
        if held:
            message = {**message, "held_back_before": held}
        return [model.from_incident(message, company)]

    async def company_map(self) -> dict[str, str]:
        """demonstration -> company, read again every minute (the last one while the database
        is away: the notice is written to the outbox later anyway, retried)."""
        if time.monotonic() - self.companies_at > COMPANIES_EVERY_S:
            try:
                async with self.db().acquire() as conn:
                    self.companies = await store.companies(conn)
                self.companies_at = time.monotonic()
            except (OSError, asyncpg.PostgresError, TimeoutError) as error:
                log.warning("companies not read again (%s); using the last ones", error)
        return self.companies

    async def take(self, notices: list[model.Notice]) -> None:
        """Into the outbox, one row per covering receiver (retrying through an outage)."""
        if not notices:
            return
        for notice in notices:
            self.metrics.notices.labels(notice.kind).inc()
        await self.retrying(self._take, notices)
        self.wake.set()

    async def _take(self, notices: list[model.Notice]) -> None:
        async with self.db().acquire() as conn:
            await store.enqueue(conn, notices, await store.receivers(conn))

    async def consume(self) -> None:
        consumer = AIOKafkaConsumer(
            topics.KPI_ALERTS,
            topics.INCIDENTS,
            **principals.client(self.settings),
            group_id=f"{self.settings.app_id}.notifier",
            enable_auto_commit=False,
            auto_offset_reset="latest",
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                if not self.consuming and consumer.assignment():
                    for tp in consumer.assignment():
                        await consumer.position(tp)
                    self.consuming = True
                notices = [
                    notice
                    for tp, records in batches.items()
                    for record in records
                    if record.value is not None
                    for notice in await self.notices_of(tp.topic, record.value)
                ]
                await self.take(notices)
                if batches:
                    try:
                        await consumer.commit()
                    except KafkaError as error:
                        # Left the group during a long database outage, say: what was read is
                        # read again by whoever owns the partitions, and the outbox keeps it once.
                        log.warning(
                            "offset commit failed (%s); the records will be read again", error
                        )
        finally:
            await consumer.stop()

    # -- delivering --------------------------------------------------------------------------

    async def deliver(self) -> None:
        async with send.session(self.guard) as session:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), IDLE_POLL_S)
                self.wake.clear()
                try:
                    await self.deliver_due(session)
                except (OSError, asyncpg.PostgresError, TimeoutError) as error:
                    log.warning("outbox unavailable (%s); trying again", error)

    async def deliver_due(self, session: aiohttp.ClientSession) -> None:
        while True:
            async with self.db().acquire() as conn:
                due = await store.claim_due(conn, BATCH, LEASE_S)
                self.metrics.pending.set(await store.pending(conn))
                receivers = {r.name: r for r in await store.receivers(conn)}
            if not due:
                return
            # A receiver removed meanwhile took its rows with it: nothing to send. Each row's
            # outcome is its own: one failing (whatever it raises) neither stops the others nor
            # the loop.
            outcomes = await asyncio.gather(
                *(
                    self.deliver_one(session, receivers[row.receiver], row)
                    for row in due
                    if row.receiver in receivers
                ),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    log.error("a delivery failed unrecorded: %r", outcome)

    async def deliver_one(
        self, session: aiohttp.ClientSession, receiver: model.Receiver, due: store.Due
    ) -> None:
        """One row: delivered, or its failure recorded on it (retried later)."""
        document = send.payload(due.notice_id, due.kind, due.subject, due.body)
        try:
            if receiver.kind == "webhook":
                await send.webhook(session, receiver, document, self.guard)
            else:
                await send.email(self.settings.smtp_url, receiver, document)
        except Exception as failure:
            error = (
                failure
                if isinstance(failure, send.DeliveryFailed)
                else send.DeliveryFailed(f"{type(failure).__name__}: {failure}"[:300])
            )
            retry = model.retry_after_s(due.attempts + 1)
            log.warning(
                "%s to %s failed (attempt %d, again in %.0f s): %s",
                due.notice_id,
                receiver.name,
                due.attempts + 1,
                retry,
                error,
            )
            self.metrics.deliveries.labels(receiver.kind, "failed").inc()
            async with self.db().acquire() as conn:
                await store.failed(conn, due, str(error), retry)
            return
        self.metrics.deliveries.labels(receiver.kind, "delivered").inc()
        if due.kind == "incident" and "arrived_at" in due.body:
            arrived = arrival_s(due.body["arrived_at"])
            self.metrics.incident_seconds.observe(max(0.0, time.time() - arrived))
        async with self.db().acquire() as conn:
            await store.delivered(conn, due)

    # -- escalating --------------------------------------------------------------------------

    async def escalate(self) -> None:
        """Breaches left open past HUB_NOTIFY_ESCALATE_AFTER go to operators (once each)."""
        after = timedelta(seconds=self.settings.notify_escalate_after_s)
        while True:
            try:
                now = datetime.now(UTC)
                async with self.db().acquire() as conn:
                    breaches = await store.open_breaches(conn, now - after)
                notices = [model.escalation(b, (now - b["ts"]).total_seconds()) for b in breaches]
                await self.take(notices)
            except (OSError, asyncpg.PostgresError, TimeoutError) as error:
                log.warning("escalation check failed (%s); next in %.0f s", error, 30)
            await asyncio.sleep(ESCALATION_EVERY_S)

    # -- Alertmanager's webhook, /metrics, /healthz --------------------------------------------

    async def alertmanager(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
            if not isinstance(payload, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:
            detail = f"not an Alertmanager payload: {error}"
            return web.json_response({"detail": detail}, status=400)
        notices, watchdogs = model.from_alertmanager(payload)
        if watchdogs:
            self.metrics.watchdog.set(time.time())
        try:
            await self.take(notices)
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            # Alertmanager sends it again: nothing is lost by answering 503.
            return web.json_response({"detail": f"database unavailable: {error}"}, status=503)
        return web.json_response({"notices": len(notices), "watchdog": watchdogs})

    async def serve_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain")

    async def healthz(self, request: web.Request) -> web.Response:
        if not self.consuming:
            return web.json_response({"status": "starting"}, status=503)
        return web.json_response({"status": "ok"})

    # -- running ----------------------------------------------------------------------------

    def db(self) -> asyncpg.Pool:
        assert self.pool is not None, "the notifier is not running"
        return self.pool

    async def retrying(
        self, step: Callable[[list[model.Notice]], Awaitable[None]], notices: list[model.Notice]
    ) -> None:
        delay = 1.0
        while True:
            try:
                await step(notices)
                return
            except (OSError, asyncpg.PostgresError, TimeoutError) as error:
                log.warning("outbox unavailable (%s); retrying in %.0f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        self.pool = await create_pool(self.settings, min_size=1, max_size=8)
        async with self.pool.acquire() as conn:
            await migrate(conn)
        await topicsetup.ensure_topics(
            self.settings.kafka_bootstrap,
            self.settings.partitions,
            [topics.KPI_ALERTS, topics.INCIDENTS],
            replication_factor=self.settings.replication_factor,
            **principals.security(self.settings),
        )
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/alertmanager", self.alertmanager)
        app.router.add_get("/metrics", self.serve_metrics)
        app.router.add_get("/healthz", self.healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.bind_host, self.settings.notify_port)
        await site.start()
        log.info(
            "notifier serving on %s:%d (POST /alertmanager, /metrics)",
            self.settings.bind_host,
            self.settings.notify_port,
        )
        tasks = [asyncio.create_task(job()) for job in (self.consume, self.deliver, self.escalate)]
        if ready is not None:
            ready()
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runner.cleanup()
            await self.pool.close()
