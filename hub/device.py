"""The device client a vendor uses to publish telemetry v1 to the hub.

    keys = {"GJ-BUK-0012-CAM1": key}  # from `hub access add-device GJ-BUK-0012-CAM1`
    sasl = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": username, "sasl_plain_password": password,
            "ssl_context": ssl.create_default_context(cafile=".hub/tls/ca.pem")}
    async with DeviceClient("127.0.0.1:9093", keys=keys, **sasl) as client:
        await client.publish("GJ-BUK-0012-CAM1", "GJ-BUK-0012", {"inference_latency_ms": 84.2})

Events are keyed by site (so a site's events stay in order on one partition: Kafka's default
murmur2 partitioner), signed with the device's key (header ``hub-signature``), batched (linger,
lz4), and sent by an idempotent producer that retries on its own: a retry never duplicates a
record on the broker, and the event_id makes any repeat the hub sees count once. ``close``
flushes everything still buffered.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer

from hub import signing, telemetry
from hub.topics import TELEMETRY


class DeliveryFailed(RuntimeError):
    """Some events could not be delivered after the producer's retries."""


class DeviceClient:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str = TELEMETRY,
        linger_ms: int = 20,
        compression_type: str = "lz4",
        max_batch_size: int = 128 * 1024,
        keys: Mapping[str, bytes] | None = None,
        **security: Any,
    ) -> None:
        """``keys``: device id -> its signing key; ``security``: aiokafka's SASL options
        (security_protocol, sasl_mechanism, ...)."""
        self.topic = topic
        self.keys = dict(keys or {})
        self.delivered = 0
        self.failed = 0
        self._last_error: BaseException | None = None
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            enable_idempotence=True,  # acks=all, no duplicates from the producer's own retries
            linger_ms=linger_ms,
            compression_type=compression_type,
            max_batch_size=max_batch_size,
            request_timeout_ms=30_000,
            retry_backoff_ms=200,
            **security,
        )

    async def __aenter__(self) -> DeviceClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        await self._producer.start()

    async def close(self) -> None:
        """Flush what is buffered, then disconnect."""
        await self._producer.stop()

    async def flush(self) -> None:
        """Wait until every event published so far is acknowledged (or failed)."""
        await self._producer.flush()
        if self._last_error is not None:
            error, self._last_error = self._last_error, None
            raise DeliveryFailed(f"{self.failed} event(s) not delivered: {error}") from error

    @staticmethod
    def event(
        device_id: str,
        site_id: str,
        metrics: dict[str, float],
        *,
        kind: str = "measurement",
        ts: datetime | None = None,
        event_id: str | None = None,
    ) -> bytes:
        """One valid telemetry v1 record (a fresh UUID and the current time unless given)."""
        return telemetry.encode(
            event_id=event_id or str(uuid.uuid4()),
            device_id=device_id,
            site_id=site_id,
            ts=ts or datetime.now(UTC),
            kind=kind,
            metrics=metrics,
        )

    async def publish(
        self,
        device_id: str,
        site_id: str,
        metrics: dict[str, float],
        *,
        kind: str = "measurement",
        ts: datetime | None = None,
        event_id: str | None = None,
    ) -> None:
        """Queue one event, signed with the device's key; returns once it is buffered, delivery
        happens in the background."""
        key = self.keys.get(device_id)
        if key is None:
            raise KeyError(f"no signing key for device {device_id} (hub access add-device)")
        value = self.event(device_id, site_id, metrics, kind=kind, ts=ts, event_id=event_id)
        await self.send_raw(site_id, value, key)

    async def send_raw(self, site_id: str, value: bytes, key: bytes | None) -> None:
        """Queue already-encoded bytes, signed with ``key`` unless None (the simulator also
        sends deliberately bad records)."""
        headers = signing.headers(key, value) if key is not None else None
        future = await self._producer.send(
            self.topic, value=value, key=site_id.encode(), headers=headers
        )
        future.add_done_callback(self._count)

    def _count(self, future: Any) -> None:
        if future.cancelled() or future.exception() is not None:
            self.failed += 1
            self._last_error = None if future.cancelled() else future.exception()
        else:
            self.delivered += 1
