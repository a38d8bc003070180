"""A record built to crash the hub, a record too large, a device clock running ahead: each
rejected or contained, and every other device's records on the same partition counted on time."""

from __future__ import annotations

import base64
import os
import time

from aiokafka.errors import KafkaError

from tests.hostile.conftest import HostileHub, now_ms, publish, sites_on
from tests.support import end_offsets, record

ON_TIME_AGES_S = (100, 60, 30, 10, 0)


async def test_a_record_dated_290_s_ahead_makes_no_other_site_late(hostile: HostileHub) -> None:
    """At the default 120 s lateness: one record from a device whose clock runs 290 s ahead,
    then on-time records (up to 100 s old) of 20 other sites on the same partition. Before event
    time was bounded by arrival, every one of them was rejected as late."""
    settings = hostile.settings
    partition = 3
    fast, *others = sites_on(partition, settings.partitions)[:21]
    start = await end_offsets(settings, "testbed.telemetry.dlq.v1")
    settled = hostile.settled()
    accepted = hostile.counter("hub_records_accepted_total")
    now = now_ms()
    records = [(fast, record(fast, now + 290_000, {"test_online": 1}))]
    records += [
        (site, record(site, now - age * 1000, {"test_online": 1}))
        for site in others
        for age in ON_TIME_AGES_S
    ]
    assert await publish(settings, records) == [None] * len(records)
    await hostile.settle(settled, len(records))
    rejected = [r for r in await hostile.rejected(start) if r["key"] in {fast, *others}]
    assert [(r["key"], r["reason"]) for r in rejected] == []
    assert hostile.counter("hub_records_accepted_total") - accepted == len(records)
    gauge = f'hub_device_clock_ahead_seconds{{device="{fast}-TST1"}}'
    ahead = hostile.worker.metrics().get(gauge)
    assert ahead is not None
    assert 280 < ahead <= 300


async def test_a_poison_value_is_rejected_and_costs_others_nothing(hostile: HostileHub) -> None:
    """1.7976931348623157e308 is a finite number; summed or sketched it overflowed, and its
    window's close failed for the whole worker. It is refused at intake now, with the accepted
    range named, and 200 on-time records of another site on its partition are counted."""
    settings = hostile.settings
    partition = 4
    poisoner, other = sites_on(partition, settings.partitions)[:2]
    start = await end_offsets(settings, "testbed.telemetry.dlq.v1")
    settled = hostile.settled()
    accepted = hostile.counter("hub_records_accepted_total")
    failures = hostile.counter("hub_batch_failures_total")
    poison = record(poisoner, now_ms(), {"test_latency_ms": 1.7976931348623157e308})
    published = time.monotonic()
    records = [(poisoner, poison)]
    records += [(other, record(other, now_ms() - i * 100, {"test_online": 1})) for i in range(200)]
    await publish(settings, records)
    await hostile.settle(settled, len(records))
    delay = time.monotonic() - published
    print(f"poison: 200 on-time records of the same partition counted {delay:.2f} s after it")
    assert hostile.counter("hub_records_accepted_total") - accepted == 200
    rejected = [r for r in await hostile.rejected(start) if r["key"] == poisoner]
    assert [(r["reason"], r["detail"]) for r in rejected] == [
        (
            "schema_violation",
            "metrics.test_latency_ms: 1.7976931348623157e+308 is outside the accepted range "
            "-1e15..1e15",
        )
    ]
    assert base64.b64decode(str(rejected[0]["value_b64"])) == poison
    assert hostile.counter("hub_batch_failures_total") == failures


async def test_records_too_large_are_refused_at_publish_or_kept_whole_in_the_dlq(
    hostile: HostileHub,
) -> None:
    """Incompressible payloads: above 1 MiB (the topic's limit, so that any client's default
    batch fits) the broker refuses the record (the device sees the error); from 64 KiB up to
    that the DLQ holds it with every byte."""
    settings = hostile.settings
    site = sites_on(5, settings.partitions)[0]
    start = await end_offsets(settings, "testbed.telemetry.dlq.v1")
    settled = hostile.settled()

    def large(size: int) -> bytes:
        value = record(site, now_ms(), {"test_online": 1})
        blob = base64.b64encode(os.urandom(size * 3 // 4)).decode()
        return value[:-1] + f',"firmware":"{blob}"}}'.encode()

    kept, refused = large(1_000_000), large(1536 * 1024)
    # No compression, and a client limit above the broker's: the broker is the one to refuse.
    outcomes = await publish(settings, [(site, kept), (site, refused)], max_request_size=4 * 2**20)
    assert outcomes[0] is None
    assert isinstance(outcomes[1], KafkaError)
    assert "TooLarge" in type(outcomes[1]).__name__
    await hostile.settle(settled, 1)
    rejected = [r for r in await hostile.rejected(start) if r["key"] == site]
    assert [r["reason"] for r in rejected] == ["too_large"]
    assert base64.b64decode(str(rejected[0]["value_b64"])) == kept
