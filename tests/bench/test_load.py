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
