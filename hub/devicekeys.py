"""The devices' signing keys in the database: issued, rotated, revoked, looked up (``hub.signing``
says how they are used).

Keys have a history (migration 0010): a key signs the records the broker appended from its issue
until its rotation or revocation, so a record is judged by the key its device held when it was
appended. ``hub access add-device`` issues a key (a rotation when the device holds one),
``hub access rotate-key`` rotates, ``hub access revoke`` closes the current key. Workers reload
the registry snapshot, keys included, when one changes, and at once when a record needs a key
their snapshot may be too old to hold. The simulator issues keys for the simulated devices that
never had one, and never revives a revoked one.
"""

from __future__ import annotations

from collections.abc import Collection

from hub import signing
from hub.db import Connection


async def issue(conn: Connection, device_id: str, key: bytes | None = None) -> bytes:
    """A new key for the device, valid from now; the current one (if any) signs only what was
    appended before now (a rotation)."""
    key = key or signing.new_key()
    async with conn.transaction():
        # now() is the transaction's time: the old key ends exactly where the new one starts.
        await conn.execute(
            "UPDATE device_keys SET revoked_at = now() WHERE device_id = $1 AND revoked_at IS NULL",
            device_id,
        )
        await conn.execute(
            "INSERT INTO device_keys (device_id, secret, issued_at) VALUES ($1, $2, now())",
            device_id,
            key,
        )
    return key


async def issue_many(conn: Connection, device_ids: Collection[str]) -> dict[str, bytes]:
    """A new key for each device, valid from now (a rotation for those holding one), in the
    caller's transaction: every device at once."""
    keys = {device: signing.new_key() for device in device_ids}
    await conn.execute(
        "UPDATE device_keys SET revoked_at = now() "
        "WHERE device_id = ANY($1::text[]) AND revoked_at IS NULL",
        list(keys),
    )
    await conn.copy_records_to_table(
        "device_keys", records=list(keys.items()), columns=["device_id", "secret"]
    )
    return keys


async def current(conn: Connection, device_id: str) -> bytes | None:
    """The key the device holds now, if any."""
    secret = await conn.fetchval(
        "SELECT secret FROM device_keys WHERE device_id = $1 AND revoked_at IS NULL", device_id
    )
    return None if secret is None else bytes(secret)


async def revoke(conn: Connection, device_id: str) -> bool:
    """The device's key signs nothing appended from now on; False if it had no valid key."""
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
                "ON CONFLICT (device_id) WHERE revoked_at IS NULL DO NOTHING",
                [(r["device_id"], signing.new_key()) for r in never],
            )
        rows = await conn.fetch(
            "SELECT device_id, secret FROM device_keys "
            "WHERE device_id = ANY($1::text[]) AND revoked_at IS NULL",
            ids,
        )
    return {r["device_id"]: bytes(r["secret"]) for r in rows}
