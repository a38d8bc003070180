"""The bench's load generator: what it prepares ahead must still be what a device sends, each
record valid, signed by its own device, on its site's partition, with an event id of its own."""

from __future__ import annotations

import time

from hub import telemetry
from streams.intake import admit
from streams.processor import Record
from tooling.bench.load import Load
from tooling.bench.validator import device_rows, registry_snapshot
from tooling.simulate.fleet import build_fleet

PARTITIONS = 12


def test_every_prepared_record_is_admitted_as_its_devices_own() -> None:
    snapshot = registry_snapshot()
    keys = {device: info.current_key or b"" for device, info in snapshot.devices.items()}
    sites = build_fleet(device_rows(), 40, seed=5)
    load = Load(sites, keys, PARTITIONS, run="t", seed=5)
    stamp = int(time.time()) - 30 + 0.25
    ids: set[str] = set()
    devices: set[str] = set()
    for tick in range(5):
        for partition, key, value, headers in load.tick(stamp + tick):
            record = Record("testbed.telemetry.v1", partition, 0, key, value, 0, headers)
            admitted = admit(record, int(time.time() * 1000), snapshot, PARTITIONS)
            event = admitted.event
            assert event.site_id.encode() == key
            assert event.ts_ms == int((stamp + tick) * 1000)
            ids.add(event.event_id)
            devices.add(event.device_id)
    assert len(ids) == load.sent == 5 * 40
    # Sites with several devices send from each in turn.
    assert len(devices) > 40
    assert telemetry.decode(value, int(time.time() * 1000)).kind in telemetry.KINDS


def test_sites_in_shares_send_each_once_an_interval_and_never_all_at_one_phase() -> None:
    """At 1 Hz the latency phase sends a tenth of the sites every tenth of a second: each site
    once a second, as devices of many companies do, not every site at the same instant."""
    from tooling.bench.latency import phases_at

    assert (phases_at(1.0), phases_at(2.5), phases_at(5.0), phases_at(10.0)) == (10, 4, 2, 1)
    sites = build_fleet(device_rows(), 40, seed=5)
    keys = {d.device_id: b"k" * 32 for s in sites for d in s.devices}
    load = Load(sites, keys, PARTITIONS, run="t", seed=5)
    shares = [[key for _, key, _, _ in load.tick(100.0 + k / 10, k, 10)] for k in range(10)]
    every = [key for share in shares for key in share]
    assert sorted(every) == sorted(s.site_id.encode() for s in sites)
    assert all(0 < len(share) <= 4 for share in shares)
