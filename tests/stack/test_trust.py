"""The broker's trust boundary on the real local stack: no anonymous principal anywhere, each of
the hub's services allowed only what it does, and the device listener encrypted."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from hub import principals, topics
from hub.settings import Settings, host_port


async def refusal(**options: object) -> str | None:
    """Why producing one record to the ticks topic was refused (the error's name), or None."""
    producer = AIOKafkaProducer(request_timeout_ms=10_000, **options)
    try:
        await producer.start()
        await producer.send_and_wait(topics.TICKS, b"0", key=b"tick", partition=0)
        return None
    except (KafkaError, ssl.SSLError, OSError) as error:
        return type(error).__name__
    finally:
        await producer.stop()


async def test_an_anonymous_client_gets_nothing_on_the_hubs_listener(stack: Settings) -> None:
    """Before, the plaintext listener's anonymous principal was the super user: anything that
    reached it (every container, in compose) could write any topic."""
    assert await refusal(bootstrap_servers=stack.kafka_bootstrap) is not None


@pytest.mark.parametrize(("role", "allowed"), [("worker", True), ("notify", False), ("api", False)])
async def test_the_hubs_internal_topics_are_written_by_its_worker_alone(
    stack: Settings, role: principals.Role, allowed: bool
) -> None:
    refused = await refusal(**principals.client(stack, role))
    assert (refused is None) == allowed, refused
    if not allowed:
        assert refused == "TopicAuthorizationFailedError"


async def test_the_device_listener_takes_tls_only(stack: Settings) -> None:
    """SASL_SSL: a client that does not speak TLS cannot log in at all; a TLS client that does not
    trust the stack's CA refuses the broker; one that trusts it completes the handshake with the
    broker's certificate for its address (and then its login decides, tests/stack/test_access)."""
    plain = {
        "bootstrap_servers": stack.kafka_sasl_bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "nobody",
        "sasl_plain_password": "nothing",
    }
    assert await refusal(**plain) is not None
    host, port = host_port(stack.kafka_sasl_bootstrap, "HUB_KAFKA_SASL_BOOTSTRAP")
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.open_connection(host, port, ssl=ssl.create_default_context())
    _, writer = await asyncio.open_connection(host, port, ssl=principals.device_tls(stack))
    try:
        cert = writer.get_extra_info("peercert")
        names = {value for kind, value in cert["subjectAltName"]}
        assert host in names
    finally:
        writer.close()
        await writer.wait_closed()
