"""Intake: a raw Kafka record in, an accepted ``Event`` or a ``Rejected`` with its reason out.

Pure: the record's bytes and key, the clock, and the registry's device -> site map are passed in.
Lateness is judged later, by the windows, which know the partition's event-time watermark.
"""

from __future__ import annotations

from collections.abc import Mapping

from hub import telemetry
from hub.telemetry import Event, Reason, Rejected


def admit(value: bytes | None, key: bytes | None, now_ms: int, devices: Mapping[str, str]) -> Event:
    """Decode, validate and check against the registry; raise Rejected otherwise.

    The record key must be the site_id: a site's events then share one partition, which is
    what lets one worker own a site's windows without a repartition step.
    """
    event = telemetry.decode(value or b"", now_ms)
    registered_at = devices.get(event.device_id)
    if registered_at is None:
        raise Rejected(Reason.UNKNOWN_DEVICE, f"device_id: {event.device_id!r} is not registered")
    if registered_at != event.site_id:
        raise Rejected(
            Reason.SITE_MISMATCH,
            f"site_id: device {event.device_id} is registered at {registered_at}, "
            f"not {event.site_id}",
        )
    if key is None or key != event.site_id.encode():
        shown = "none" if key is None else repr(key.decode(errors="replace"))
        raise Rejected(Reason.SITE_MISMATCH, f"key: {shown} is not the site_id {event.site_id!r}")
    return event
