"""The notifier on the real broker, database and Alertmanager: KPI alerts, incidents, platform
alerts and escalations reach the receivers their scope covers, once each, over HTTP and SMTP
(aiosmtpd), retried while a receiver fails, and nothing read is lost across a restart."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller

from hub import principals, topics
from hub.settings import Settings
from tests.conftest import TEST_DEMO, WorkerProcess, registry_dir_with_test_demo, run_hub_async
from tests.support import eventually, record, scratch_database, send_all, signed
from tooling.localrun import drop_hub_topics, fresh_hub, scrape
from tooling.stack.principals import grant_hub

NOTIFY_PORT = 9096  # where the local stack's Alertmanager sends (deploy/alertmanager)
GWANGJU_T01_SITE = "GJ-BUK-0002"  # hosts a DEMO-T01 test device (the first Gwangju sites do)
ESCALATED = f"esc-{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Inbox:
    """Webhook receivers on one local HTTP server: POST /<name>; /flaky fails twice first."""

    received: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    flaky_failures: int = 2
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "redirect":  # a receiver pointing the hub elsewhere (its own services, say)
            raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{self.port}/trap")
        if name == "flaky" and self.flaky_failures > 0:
            self.flaky_failures -= 1
            return web.Response(status=500, text="not now")
        self.received.append((name, await request.json(), time.time()))
        return web.Response(status=204)

    def ids(self, name: str, prefix: str = "") -> list[str]:
        return [
            doc["notice_id"]
            for who, doc, _ in self.received
            if who == name and doc["notice_id"].startswith(prefix)
        ]


class Mailbox:
    """aiosmtpd's handler: every message delivered to the local SMTP server."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def subjects(self, to: str) -> list[str]:
        return [str(m["Subject"]) for m in self.messages if m["To"] == to]


class NotifierProcess:
    """A real `hub notify serve`, stopped by its pid."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = {**os.environ, **env}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NotifierProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hub", "notify", "serve"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        return self

    async def ready(self, timeout_s: float = 60) -> None:
        """Until /healthz answers 200: its consumer holds its partitions."""

        async def healthy() -> bool | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"hub notify serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                url = f"http://127.0.0.1:{NOTIFY_PORT}/healthz"
                with await asyncio.to_thread(urllib.request.urlopen, url, timeout=2):
                    return True
            except OSError:
                return None

        await eventually(healthy, "the notifier to serve", timeout_s)

    def metrics(self) -> dict[str, float]:
        return scrape(NOTIFY_PORT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@dataclass
class Notified:
    url: str
    env: dict[str, str]
    inbox: Inbox
    mailbox: Mailbox
    process: NotifierProcess


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
async def notified(
    stack: Settings, mailbox: tuple[Mailbox, int], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Notified]:
    """A scratch database (the registry with DEMO-T01), webhook and e-mail receivers of every
    scope added by `hub notify`, and the notifier running on the port Alertmanager sends to."""
    inbox = Inbox()
    app = web.Application()
    app.router.add_post("/{name}", inbox.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    inbox.port = free_port()
    await web.TCPSite(runner, "127.0.0.1", inbox.port).start()
    directory = registry_dir_with_test_demo(tmp_path_factory.mktemp("registry"))
    logs = tmp_path_factory.mktemp("notifier")
    try:
        async with scratch_database(stack, directory) as url:
            box, smtp_port = mailbox
            app_id = f"notify-{uuid.uuid4().hex[:8]}"
            # The notifier's principal reads in this hub's group only.
            await asyncio.to_thread(grant_hub, stack, app_id)
            env = {
                "HUB_DATABASE_URL": url,
                "HUB_APP_ID": app_id,
                "HUB_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
                "HUB_NOTIFY_ESCALATE_AFTER": "600",
                # The test's receivers listen on loopback, which the notifier refuses by default.
                "HUB_NOTIFY_ALLOW_NETWORKS": "127.0.0.0/8",
            }
            base = f"http://127.0.0.1:{inbox.port}"
            for args in (
                ("add-webhook", "ops", f"{base}/ops", "--scope", "operator"),
                ("add-webhook", "flaky", f"{base}/flaky", "--scope", "operator"),
                ("add-webhook", "jn", f"{base}/jn", "--scope", "partner:jeonnam"),
                ("add-webhook", "gj", f"{base}/gj", "--scope", "partner:gwangju"),
                ("add-email", "testco", "ops@testco.example", "--scope", "company:Test Co"),
                ("add-email", "parkeye", "ops@parkeye.example", "--scope", "company:ParkEye"),
            ):
                added = await run_hub_async("notify", *args, env=env)
                assert added.returncode == 0, added.stderr
                assert added.stdout.startswith(f"added {args[1]}:")
            # A breach open for an hour, unacknowledged: escalated at the notifier's first check.
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(
                    "INSERT INTO kpi_alerts (alert_id, ts, demonstration_id, site_id, kpi_id,"
                    " transition, value, threshold, status) VALUES ($1, now() - interval '1 hour',"
                    " 'DEMO-005', 'JN-MOKPO-0001', 'read_accuracy', 'breach', 90, 95, 'open')",
                    ESCALATED,
                )
            finally:
                await conn.close()
            process = NotifierProcess(env, logs / "notifier.log").start()
            try:
                await process.ready()
                yield Notified(url, env, inbox, box, process)
            finally:
                process.stop()
    finally:
        await runner.cleanup()


def kpi_alert(alert_id: str, site: str, region: str, demo: str) -> bytes:
    now = datetime.now(UTC).replace(microsecond=0)
    return json.dumps(
        {
            "schema": "kpi-alert/1",
            "alert_id": alert_id,
            "transition": "breach",
            "demonstration_id": demo,
            "kpi_id": "read_accuracy",
            "site_id": site,
            "region": region,
            "district": "x",
            "status": "fail",
            "previous_status": "pass",
            "value": 90.0,
            "threshold": 95,
            "window_start": (now - timedelta(minutes=15)).isoformat(),
            "window_end": now.isoformat(),
            "ts": now.isoformat(),
        }
    ).encode()


async def test_kpi_alerts_reach_each_scope_once_retried_and_across_a_restart(
    notified: Notified, stack: Settings
) -> None:
    tag = uuid.uuid4().hex[:8]
    jeonnam = kpi_alert(f"{tag}-jn", "JN-MOKPO-0001", "jeonnam", "DEMO-005")
    gwangju = kpi_alert(f"{tag}-gj", "GJ-BUK-0002", "gwangju", "DEMO-001")
    # Each published twice (a replayed window): delivered once.
    await send_all(stack, topics.KPI_ALERTS, [("a", jeonnam), ("b", gwangju)] * 2)
    inbox, mailbox = notified.inbox, notified.mailbox
    want = {f"alert:{tag}-jn", f"alert:{tag}-gj"}

    async def delivered() -> bool | None:
        done = (
            set(inbox.ids("ops", f"alert:{tag}")) == want == set(inbox.ids("flaky", f"alert:{tag}"))
        )
        return True if done and mailbox.subjects("ops@parkeye.example") else None

    await eventually(delivered, "the alerts at every receiver", 60)
    assert sorted(inbox.ids("ops", f"alert:{tag}")) == sorted(want)  # once each
    assert inbox.ids("jn", f"alert:{tag}") == [f"alert:{tag}-jn"]
    assert inbox.ids("gj", f"alert:{tag}") == [f"alert:{tag}-gj"]
    parkeye = mailbox.subjects("ops@parkeye.example")
    assert len(parkeye) == 1
    assert parkeye[0].startswith("[breach] DEMO-005 read_accuracy at JN-MOKPO-0001: 90")
    assert not [s for s in mailbox.subjects("ops@testco.example") if tag in s]
    assert inbox.flaky_failures == 0  # it failed twice and was tried again

    async def flaky_drained() -> str | None:
        # Its two failures may have hit an earlier notice (the escalation, a platform alert):
        # that one waits out its backoff (5 s, then 10 s) and is delivered then.
        listed = await run_hub_async("notify", "list", env=notified.env)
        flaky = next(line for line in listed.stdout.splitlines() if line.startswith("flaky"))
        return flaky if "pending    0" in flaky and "last error" not in flaky else None

    await eventually(flaky_drained, "the flaky receiver's retried notices delivered", 45)

    # Published while the notifier is down: delivered once it is back.
    notified.process.stop()
    late = kpi_alert(f"{tag}-late", "JN-MOKPO-0001", "jeonnam", "DEMO-005")
    await send_all(stack, topics.KPI_ALERTS, [("a", late)])
    notified.process.start()
    await notified.process.ready()

    async def caught_up() -> bool | None:
        return True if f"alert:{tag}-late" in inbox.ids("jn") else None

    await eventually(caught_up, "the alert published while the notifier was down", 60)


@pytest.fixture
async def incident_worker(notified: Notified, tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    """A worker of its own on the notifier's scratch database (the registry with DEMO-T01): the
    session's worker reads the shared database, whose registry other tests reload."""
    settings = Settings.from_env({**os.environ, "HUB_DATABASE_URL": notified.url})
    app_id = f"incident-{uuid.uuid4().hex[:8]}"
    await fresh_hub(settings, app_id)
    env = {"HUB_DATABASE_URL": notified.url, "HUB_APP_ID": app_id, "HUB_WORKER_WEB_PORT": "16466"}
    worker = WorkerProcess(0, tmp_path, env).start()
    try:
        await asyncio.to_thread(worker.wait_ready)
        yield worker
    finally:
        worker.stop()
        await drop_hub_topics(settings, app_id)


async def test_an_incident_reaches_its_receivers_within_15_s(
    notified: Notified, incident_worker: WorkerProcess, stack: Settings
) -> None:
    """Through intake (signed, validated) and straight on: no window to wait for."""
    event_id = f"incident-{uuid.uuid4().hex[:8]}"
    value = record(
        GWANGJU_T01_SITE,
        int(time.time() * 1000),
        {"test_push": 1.0},
        event_id=event_id,
        kind="incident",
    )
    producer = AIOKafkaProducer(**principals.client(stack), acks="all")
    await producer.start()
    try:
        published = time.time()
        await producer.send_and_wait(
            topics.TELEMETRY, value=value, key=GWANGJU_T01_SITE.encode(), headers=signed(value)
        )
    finally:
        await producer.stop()
    inbox, mailbox = notified.inbox, notified.mailbox

    notice = f"incident:{GWANGJU_T01_SITE}-TST1:{event_id}"  # ids are unique per device

    async def told() -> bool | None:
        everyone = (
            inbox.ids("ops", notice)
            and inbox.ids("gj", notice)
            and [s for s in mailbox.subjects("ops@testco.example") if TEST_DEMO in s]
        )
        return True if everyone else None

    await eventually(told, "the incident at the operator, partner and company receivers", 15)
    took = max(t for who, doc, t in inbox.received if doc["notice_id"] == notice)
    print(f"incident: published -> at the webhooks in {took - published:.2f} s")
    assert not inbox.ids("jn", notice)  # another region's partner
    doc = next(d for who, d, _ in inbox.received if d["notice_id"] == notice)
    assert doc["detail"]["device_id"] == f"{GWANGJU_T01_SITE}-TST1"
    assert doc["detail"]["demonstration_id"] == TEST_DEMO


async def test_a_breach_left_open_is_escalated_to_operators_once(notified: Notified) -> None:
    """HUB_NOTIFY_ESCALATE_AFTER is 600 s here: the breach of the fixture has been open an hour."""
    inbox = notified.inbox

    async def escalated() -> bool | None:
        return True if inbox.ids("ops", f"escalation:{ESCALATED}") else None

    await eventually(escalated, "the escalation of the open breach", 45)
    assert len(inbox.ids("ops", f"escalation:{ESCALATED}")) == 1
    assert not inbox.ids("jn", "escalation:")  # operators only
    subject = next(d["subject"] for _, d, _ in inbox.received if d["notice_id"].endswith(ESCALATED))
    assert f"/api/v1/alerts/{ESCALATED}/ack" in subject


async def test_platform_alerts_reach_operators_through_alertmanager(notified: Notified) -> None:
    """A rule firing in Prometheus (the always-firing watchdog) reaches the notifier through the
    stack's Alertmanager; an alert posted to Alertmanager reaches the operators' receivers."""
    name = f"HubNotifyTest{uuid.uuid4().hex[:6]}"
    alert = [{"labels": {"alertname": name}, "annotations": {"summary": "a test alert"}}]
    request = urllib.request.Request(
        "http://127.0.0.1:9095/api/v2/alerts",
        data=json.dumps(alert).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    with await asyncio.to_thread(urllib.request.urlopen, request, timeout=10) as response:
        assert response.status == 200
    inbox = notified.inbox

    async def paged() -> list[str] | None:
        got = [
            d["subject"] for who, d, _ in inbox.received if who == "ops" and name in d["subject"]
        ]
        return got or None

    assert (await eventually(paged, "the platform alert at the operator", 60)) == [
        f"[firing] {name}: a test alert"
    ]
    assert not [d for who, d, _ in inbox.received if who == "jn" and name in d["subject"]]

    async def watchdog() -> float | None:
        return notified.process.metrics().get("hub_notify_watchdog_timestamp_seconds") or None

    await eventually(watchdog, "the watchdog rule to reach the notifier", 120)


async def test_notify_refuses_what_it_cannot_honour(notified: Notified) -> None:
    bad = await run_hub_async(
        "notify", "add-webhook", "x", "ftp://nowhere", "--scope", "operator", env=notified.env
    )
    assert bad.returncode == 1
    assert "URL 'ftp://nowhere'" in bad.stderr
    gone = await run_hub_async("notify", "remove", "nobody", env=notified.env)
    assert gone.returncode == 1
    assert "no receiver named 'nobody'" in gone.stderr


async def publish_signed(stack: Settings, site: str, value: bytes) -> None:
    producer = AIOKafkaProducer(**principals.client(stack), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.TELEMETRY, value=value, key=site.encode(), headers=signed(value)
        )
    finally:
        await producer.stop()


async def test_nothing_a_device_sends_stops_the_notifier(
    notified: Notified, incident_worker: WorkerProcess, stack: Settings
) -> None:
    """An incident whose event id carries CR/LF, a header of its own and non-ASCII goes through
    intake to every receiver (the mail's headers encoded safely); values on the notifier's
    topics that are not what the hub writes are counted and skipped; the notifier stays up and
    delivers what comes next."""
    event_id = f"evil-{uuid.uuid4().hex[:6]}\r\nBcc: everyone@example.com\r\n\u00e9\u2028"
    value = record(
        GWANGJU_T01_SITE,
        int(time.time() * 1000),
        {"test_push": 1.0},
        event_id=event_id,
        kind="incident",
    )
    skipped = notified.process.metrics().get(
        'hub_notify_skipped_total{topic="hub.internal.incidents"}', 0.0
    )
    await publish_signed(stack, GWANGJU_T01_SITE, value)
    junk = [b"[]", b"42", b"\xff\xfe", b'{"event_id": 7}', b'"text"']
    await send_all(stack, topics.INCIDENTS, [("k", v) for v in junk])
    await send_all(stack, topics.KPI_ALERTS, [("k", v) for v in junk])
    tag = uuid.uuid4().hex[:8]
    after = kpi_alert(f"{tag}-after", "GJ-BUK-0002", "gwangju", "DEMO-001")
    await send_all(stack, topics.KPI_ALERTS, [("k", after)])
    notice = f"incident:{GWANGJU_T01_SITE}-TST1:{event_id}"
    inbox, mailbox = notified.inbox, notified.mailbox

    async def delivered() -> bool | None:
        mailed = [
            m
            for m in mailbox.messages
            if m["To"] == "ops@testco.example" and "evil" in m.get_payload()
        ]
        done = inbox.ids("ops", notice) and inbox.ids("ops", f"alert:{tag}-after") and mailed
        return True if done else None

    await eventually(delivered, "the incident and the next alert delivered", 30)
    assert notified.process.proc is not None
    assert notified.process.proc.poll() is None, "the notifier exited"
    mail = next(m for m in mailbox.messages if "evil" in m.get_payload())
    assert mail["Bcc"] is None  # the event id's text stayed in the body
    assert str(mail["Message-ID"]).endswith("@testbed-hub>")
    metrics = notified.process.metrics()
    assert metrics.get(
        'hub_notify_skipped_total{topic="hub.internal.incidents"}', 0.0
    ) - skipped == len(junk)
    assert metrics.get('hub_notify_skipped_total{topic="testbed.kpi-alerts.v1"}', 0.0) >= len(junk)


def incident(device: str, event_id: str, arrived: datetime) -> bytes:
    return json.dumps(
        {
            "schema": "incident/1",
            "event_id": event_id,
            "device_id": device,
            "site_id": GWANGJU_T01_SITE,
            "demonstration_id": TEST_DEMO,
            "region": "gwangju",
            "district": "buk",
            "ts": arrived.isoformat(),
            "arrived_at": arrived.isoformat(),
            "metrics": {"test_push": 1.0},
        }
    ).encode()


async def test_a_storm_of_incidents_from_one_device_is_heard_a_few_times(
    notified: Notified, stack: Settings
) -> None:
    """At the defaults (a burst of 5, then 30 an hour): 12 incidents in a second from one device
    give its first 5 notices; the other 7 are counted, not sent. Another device is not held back
    by it."""
    device = f"storm-{uuid.uuid4().hex[:6]}"
    quiet = f"quiet-{uuid.uuid4().hex[:6]}"
    held = notified.process.metrics().get("hub_notify_incidents_held_total", 0.0)
    now = datetime.now(UTC)
    storm = [incident(device, f"s{n}", now + timedelta(milliseconds=n)) for n in range(12)]
    await send_all(
        stack, topics.INCIDENTS, [("k", v) for v in [*storm, incident(quiet, "q0", now)]]
    )
    inbox = notified.inbox

    async def heard() -> bool | None:
        return (
            True
            if inbox.ids("ops", f"incident:{quiet}:")
            and len(inbox.ids("ops", f"incident:{device}:")) >= 5
            else None
        )

    await eventually(heard, "the storm's first notices and the quiet device's", 30)

    async def counted() -> float | None:
        value = notified.process.metrics().get("hub_notify_incidents_held_total", 0.0) - held
        return value if value >= 7 else None

    assert await eventually(counted, "the held-back incidents counted", 15) == 7
    assert sorted(inbox.ids("ops", f"incident:{device}:")) == [
        f"incident:{device}:s{n}" for n in range(5)
    ]


async def test_webhooks_follow_no_redirect_and_reach_no_local_service_unless_allowed(
    notified: Notified, stack: Settings
) -> None:
    """A receiver answering 307 (to a URL of the hub's own, say Prometheus' /-/quit) is not
    followed: the delivery fails, recorded on its row. A link-local target (a cloud's metadata
    address) is refused before any connection."""
    base = f"http://127.0.0.1:{notified.inbox.port}"
    for args in (
        ("add-webhook", "redirect", f"{base}/redirect", "--scope", "operator"),
        ("add-webhook", "metadata", "http://169.254.169.254/latest", "--scope", "operator"),
    ):
        added = await run_hub_async("notify", *args, env=notified.env)
        assert added.returncode == 0, added.stderr
    try:
        tag = uuid.uuid4().hex[:8]
        await send_all(
            stack,
            topics.KPI_ALERTS,
            [("k", kpi_alert(f"{tag}-r", "GJ-BUK-0002", "gwangju", "DEMO-001"))],
        )

        async def failed() -> dict[str, str] | None:
            listed = await run_hub_async("notify", "list", env=notified.env)
            lines = {line.split()[0]: line for line in listed.stdout.splitlines() if line.strip()}
            both = all("last error" in lines.get(n, "") for n in ("redirect", "metadata"))
            return lines if both else None

        lines = await eventually(failed, "both deliveries to fail and be recorded", 30)
        assert "HTTP 307" in lines["redirect"]
        assert "link-local: refused" in lines["metadata"]
        assert not inbox_trap(notified)
        assert notified.process.proc is not None
        assert notified.process.proc.poll() is None
    finally:
        for name in ("redirect", "metadata"):
            await run_hub_async("notify", "remove", name, env=notified.env)


def inbox_trap(notified: Notified) -> list[str]:
    return [doc["notice_id"] for who, doc, _ in notified.inbox.received if who == "trap"]
