"""The devices' signing keys in the database: issued, revoked, looked up (``hub.signing`` says how
they are used).

A key is issued by ``hub access add-device`` (a new one replaces the old) and revoked by
``hub access revoke``; workers reload the registry snapshot, keys included, when one changes. The
simulator issues keys for the simulated devices that never had one, and never revives a revoked
one.
"""

from __future__ import annotations

from collections.abc import Collection

from hub import signing
from hub.db import Connection


async def issue(conn: Connection, device_id: str) -> bytes:
    """A new key for the device (the previous one stops working)."""
    key = signing.new_key()
    await conn.execute(
        """INSERT INTO device_keys (device_id, secret) VALUES ($1, $2)
           ON CONFLICT (device_id) DO UPDATE SET secret = excluded.secret, issued_at = now(),
                                                 revoked_at = NULL""",
        device_id,
        key,
    )
    return key


async def revoke(conn: Connection, device_id: str) -> bool:
    """The device's key stops working; False if it had no valid key."""
    status = await conn.execute(
        "UPDATE device_keys SET revoked_at = now() WHERE device_id = $1 AND revoked_at IS NULL",
        device_id,
    )
    return status.endswith(" 1")


async def ensure(conn: Connection, device_ids: Collection[str]) -> dict[str, bytes]:
    """The valid keys of ``device_ids``, issuing one to each registered device that never had
    one (a revoked key stays revoked: that device is left out)."""
    ids = list(device_ids)
    async with conn.transaction():
        never = await conn.fetch(
            """SELECT d.device_id FROM devices d
                WHERE d.device_id = ANY($1::text[])
                  AND NOT EXISTS (SELECT 1 FROM device_keys k WHERE k.device_id = d.device_id)""",
            ids,
        )
        if never:
            await conn.executemany(
                "INSERT INTO device_keys (device_id, secret) VALUES ($1, $2) "
                "ON CONFLICT (device_id) DO NOTHING",
                [(r["device_id"], signing.new_key()) for r in never],
            )
        rows = await conn.fetch(
            "SELECT device_id, secret FROM device_keys "
            "WHERE device_id = ANY($1::text[]) AND revoked_at IS NULL",
            ids,
        )
    return {r["device_id"]: bytes(r["secret"]) for r in rows}
