"""Who may publish and who may subscribe, with real clients on the broker's SASL listener."""

from __future__ import annotations

import csv
import stat
import time
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from hub import principals, topics
from hub.registry.files import read_registry
from hub.settings import Settings
from tests.conftest import run_hub_async
from tests.support import scratch_database


async def add(*args: str) -> tuple[str, str]:
    """`hub access add-...`: the username and password it prints."""
    result = await run_hub_async("access", *args, timeout_s=180)
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(None, 1) for line in result.stdout.splitlines() if line.strip())
    return fields["username"], fields["password"]


def sasl(settings: Settings, user: str, password: str) -> dict[str, object]:
    return {
        "bootstrap_servers": settings.kafka_sasl_bootstrap,
        "security_protocol": "SASL_SSL",
        "ssl_context": principals.device_tls(settings),  # trusting the stack's CA
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": user,
        "sasl_plain_password": password,
        "request_timeout_ms": 10_000,
    }


async def refusal(settings: Settings, creds: tuple[str, str], topic: str) -> str | None:
    """Why producing to ``topic`` was refused (the error's name), None if it was not."""
    producer = AIOKafkaProducer(**sasl(settings, *creds))
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{}", key=b"GJ-BUK-0001")
        return None
    except KafkaError as error:
        return type(error).__name__
    finally:
        await producer.stop()


async def read_refusal(
    settings: Settings, creds: tuple[str, str], topic: str, group: str | None = None
) -> str | None:
    """Fetches from ``topic``'s start (and commits in ``group``): why that was refused, or None."""
    consumer = AIOKafkaConsumer(
        **sasl(settings, *creds),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.getmany(tp, timeout_ms=3000)
        if group:
            await consumer.commit({tp: 0})  # the group must be allowed too
        return None
    except KafkaError as error:
        return type(error).__name__
    finally:
        await consumer.stop()


async def connect_refusal(settings: Settings, creds: tuple[str, str]) -> str | None:
    producer = AIOKafkaProducer(**sasl(settings, *creds))
    try:
        await producer.start()
        return None
    except KafkaError as error:
        return type(error).__name__
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def device_id() -> str:
    return read_registry().devices[0].device_id


async def test_a_device_may_publish_telemetry_and_nothing_else(
    loaded_registry: Settings, device_id: str
) -> None:
    creds = await add("add-device", device_id)
    assert creds[0] == f"device.{device_id}"
    assert await refusal(loaded_registry, creds, topics.TELEMETRY) is None
    denied = "TopicAuthorizationFailedError"
    assert await refusal(loaded_registry, creds, topics.DLQ) == denied
    assert await read_refusal(loaded_registry, creds, topics.TELEMETRY) == denied


async def test_a_partner_reads_only_its_regions_topics_in_its_own_groups(
    loaded_registry: Settings,
) -> None:
    name = f"acme-{uuid.uuid4().hex[:6]}"
    creds = await add("add-partner", "jeonnam", name)
    own = topics.partner_topic("jeonnam", "kpi-results")
    other = topics.partner_topic("gwangju", "kpi-results")
    assert await read_refusal(loaded_registry, creds, own, f"{name}.dashboard") is None
    denied = "TopicAuthorizationFailedError"
    assert await read_refusal(loaded_registry, creds, other, f"{name}.dashboard") == denied
    assert await read_refusal(loaded_registry, creds, own, "someone-else") == (
        "GroupAuthorizationFailedError"
    )
    assert await refusal(loaded_registry, creds, topics.TELEMETRY) == denied


async def test_a_wrong_password_and_a_revoked_user_cannot_connect(
    loaded_registry: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The client gives up with a connection error; why is in aiokafka's log."""
    name = f"gone-{uuid.uuid4().hex[:6]}"
    user, password = await add("add-partner", "gwangju", name)
    assert await connect_refusal(loaded_registry, (user, password)) is None
    caplog.clear()
    assert await connect_refusal(loaded_registry, (user, password + "x")) == "KafkaConnectionError"
    assert "SaslAuthenticationFailed" in caplog.text
    revoked = await run_hub_async("access", "revoke", user, timeout_s=180)
    assert revoked.returncode == 0, revoked.stderr
    caplog.clear()
    assert await connect_refusal(loaded_registry, (user, password)) == "KafkaConnectionError"
    assert "SaslAuthenticationFailed" in caplog.text


async def test_bad_requests_are_refused_with_the_reason(loaded_registry: Settings) -> None:
    unknown = await run_hub_async("access", "add-device", "GJ-NOPE-0000-CAM1")
    assert unknown.returncode == 1
    assert "not in the registry" in unknown.stderr
    stranger = await run_hub_async("access", "revoke", "root")
    assert stranger.returncode == 1
    assert "not a user `hub access` creates" in stranger.stderr
    # A partner named like the hub would read the hub's own consumer groups (<name>.*).
    squatter = await run_hub_async("access", "add-partner", "gwangju", "testbed-hub")
    assert squatter.returncode == 1
    assert "the hub's consumer groups start with 'testbed-hub'" in squatter.stderr


async def test_a_whole_demonstrations_credentials_at_once(stack: Settings, tmp_path: Path) -> None:
    """DEMO-001's devices (717) get a login and a signing key each in one command, through the
    Admin API (no JVM per device), in a file only its owner may read; a device logs in with
    its line and publishes."""
    async with scratch_database(stack) as url:
        env = {"HUB_DATABASE_URL": url}
        out = tmp_path / "demo-001.csv"
        began = time.monotonic()
        issued = await run_hub_async(
            "access", "add-devices", "--demonstration", "DEMO-001", "--out", str(out), env=env
        )
        took = time.monotonic() - began
        assert issued.returncode == 0, issued.stderr
        print(f"add-devices: {issued.stdout.strip()} (the command took {took:.1f} s)")
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        with out.open() as handle:
            rows = list(csv.DictReader(handle))
        devices = {d.device_id for d in read_registry().devices if d.demonstration_id == "DEMO-001"}
        assert {r["device_id"] for r in rows} == devices
        again = await run_hub_async(
            "access", "add-devices", "--demonstration", "DEMO-001", "--out", str(out), env=env
        )
        assert again.returncode == 1
        assert "exists already" in again.stderr
        conn = await asyncpg.connect(url)
        try:
            current = {
                r["device_id"]: bytes(r["secret"]).hex()
                for r in await conn.fetch(
                    "SELECT device_id, secret FROM device_keys WHERE revoked_at IS NULL"
                )
            }
        finally:
            await conn.close()
    assert all(current[r["device_id"]] == r["signing_key"] for r in rows)
    first = rows[0]
    assert await refusal(stack, (first["username"], first["password"]), topics.TELEMETRY) is None
    assert await refusal(stack, (first["username"], first["password"]), topics.DLQ) is not None
