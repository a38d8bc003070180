"""A simulated fleet: the registered devices of N sites, each behaving like its technology.

Devices go offline now and then (an outage of 20-90 s), keep measuring, and on reconnect send
what they buffered with its original event time: the hub sees late, out-of-order events as it
would from a real fleet. A share of records can be deliberately bad, one contract reason each.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec

from hub import telemetry
from hub.registry.model import KST
from hub.telemetry import Reason
from tooling.simulate.profiles import Profile, profile_for, site_quality

BAD_REASONS = (
    Reason.MALFORMED_JSON,
    Reason.SCHEMA_VIOLATION,
    Reason.UNKNOWN_DEVICE,
    Reason.SITE_MISMATCH,
    Reason.TOO_LARGE,
    Reason.CLOCK_SKEW,
)
MAX_BUFFERED = 120
# (site, the device that sends it, the record's bytes)
Outgoing = tuple[str, str, bytes]


@dataclass(slots=True)
class SimDevice:
    device_id: str
    site_id: str
    profile: Profile
    offline_until: float = 0.0
    buffer: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class SimSite:
    site_id: str
    region: str
    district: str
    devices: list[SimDevice]
    quality: float
    turn: int = 0


@dataclass(slots=True)
class Tally:
    """What was sent: every record counted once, by kind, and the bad ones by reason. ``marked``:
    the records sent as deliberate faults (a reason) or held back in an outage ("outage"), by
    the digest of their bytes, so that what the hub rejected can be told apart from them."""

    sent: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    bad: Counter[str] = field(default_factory=Counter)
    buffered_in_outages: int = 0
    marked: dict[bytes, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "by_kind": dict(self.by_kind),
            "bad": {str(reason): n for reason, n in self.bad.items()},
            "buffered_in_outages": self.buffered_in_outages,
        }


def digest(record: bytes) -> bytes:
    """How a sent record is recognised in the DLQ (whose copy holds its bytes)."""
    return hashlib.blake2b(record, digest_size=12).digest()


def build_fleet(rows: list[tuple[str, str, str, str, str]], sites: int, seed: int) -> list[SimSite]:
    """``rows``: (site_id, region, district, device_id, technology). Picks ``sites`` sites spread
    over all districts (a seeded shuffle), or every site when ``sites`` is 0 or larger."""
    grouped: dict[str, SimSite] = {}
    for site_id, region, district, device_id, technology in rows:
        site = grouped.get(site_id)
        if site is None:
            site = grouped[site_id] = SimSite(site_id, region, district, [], site_quality(site_id))
        site.devices.append(SimDevice(device_id, site_id, profile_for(technology)))
    chosen = sorted(grouped.values(), key=lambda s: s.site_id)
    random.Random(seed).shuffle(chosen)
    return chosen[:sites] if 0 < sites < len(chosen) else chosen


class Fleet:
    """Produces the next records to send; pure apart from the random generator and the clock."""

    def __init__(
        self,
        sites: list[SimSite],
        *,
        bad_fraction: float = 0.0,
        outage_per_hour: float = 2.0,
        seed: int = 1,
    ) -> None:
        self.sites = sites
        self.bad_fraction = bad_fraction
        self.outage_per_hour = outage_per_hour
        self.rng = random.Random(seed)
        self.tally = Tally()

    def tick(self, now: float, interval_s: float) -> list[Outgoing]:
        """One event per site (from its devices in turn), plus what reconnecting devices flush:
        (site, the device that sends it, bytes)."""
        out: list[Outgoing] = []
        rng = self.rng
        outage_chance = self.outage_per_hour * interval_s / 3600.0
        stamp = datetime.fromtimestamp(now, KST)
        for site in self.sites:
            device = site.devices[site.turn % len(site.devices)]
            site.turn += 1
            if self.bad_fraction and rng.random() < self.bad_fraction:
                reason = rng.choice(BAD_REASONS)
                bad = self.bad_record(reason, site, device, stamp)
                out.append((site.site_id, device.device_id, bad))
                self.tally.bad[reason] += 1
                self.tally.marked[digest(bad)] = str(reason)
                continue
            kind, metrics = device.profile(rng, site.quality)
            jitter = timedelta(milliseconds=rng.uniform(-40.0, 40.0))
            record = telemetry.encode(
                event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                device_id=device.device_id,
                site_id=site.site_id,
                ts=stamp + jitter,
                kind=kind,
                metrics=metrics,
            )
            self.tally.by_kind[kind] += 1
            if now < device.offline_until:
                if len(device.buffer) < MAX_BUFFERED:
                    device.buffer.append(record)
                    self.tally.buffered_in_outages += 1
                    self.tally.marked[digest(record)] = "outage"
                else:
                    self.tally.by_kind[kind] -= 1  # a full buffer drops, as real devices do
                continue
            if device.buffer:
                out.extend((site.site_id, device.device_id, held) for held in device.buffer)
                device.buffer.clear()
            out.append((site.site_id, device.device_id, record))
            if rng.random() < outage_chance:
                device.offline_until = now + rng.uniform(20.0, 90.0)
        self.tally.sent += len(out)
        return out

    def drain(self) -> list[Outgoing]:
        """At the end, devices still offline reconnect and flush their buffers."""
        out = [(d.site_id, d.device_id, r) for s in self.sites for d in s.devices for r in d.buffer]
        for site in self.sites:
            for device in site.devices:
                device.buffer.clear()
        self.tally.sent += len(out)
        return out

    def bad_record(
        self, reason: Reason, site: SimSite, device: SimDevice, stamp: datetime
    ) -> bytes:
        base = {
            "schema": telemetry.SCHEMA,
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "device_id": device.device_id,
            "site_id": site.site_id,
            "ts": stamp.isoformat(timespec="milliseconds"),
            "kind": "measurement",
            "metrics": {"online": 1},
        }
        if reason is Reason.MALFORMED_JSON:
            return msgspec.json.encode(base)[:-7]
        if reason is Reason.SCHEMA_VIOLATION:
            base["metrics"] = {"online": "yes"}
        elif reason is Reason.UNKNOWN_DEVICE:
            base["device_id"] = f"{site.site_id}-UNREGISTERED9"
        elif reason is Reason.SITE_MISMATCH:
            other = self.rng.choice(self.sites)
            base["site_id"] = other.site_id if other is not site else site.site_id + "-X"
        elif reason is Reason.TOO_LARGE:
            base["firmware_dump"] = "0" * (telemetry.MAX_BYTES + 1024)
        elif reason is Reason.CLOCK_SKEW:
            base["ts"] = (stamp + timedelta(hours=1)).isoformat(timespec="milliseconds")
        return msgspec.json.encode(base)
