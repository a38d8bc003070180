"""The notifier's tables: receivers, and the outbox of what each one is owed (migration 0008).

A notice goes into the outbox once per covering receiver, keyed by (notice id, receiver): the
same notice read again adds nothing. Delivery claims due rows with ``SKIP LOCKED``, so two
notifiers never send the same row at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.db import Connection
from hub.notify.model import Notice, Receiver, ReceiverError, covers


@dataclass(frozen=True, slots=True)
class Due:
    notice_id: str
    receiver: str
    kind: str
    subject: str
    body: dict[str, Any]
    attempts: int


async def add_receiver(conn: Connection, receiver: Receiver) -> bool:
    """Add or replace (by name); True when it is new. A partner's region must be one of the hub's
    (regions are data): a receiver for a region that is not would never be told anything."""
    if receiver.role == "partner" and not await conn.fetchval(
        "SELECT true FROM regions WHERE code = $1", receiver.scope
    ):
        known = [r["code"] for r in await conn.fetch("SELECT code FROM regions ORDER BY code")]
        raise ReceiverError(
            f"--scope: region {receiver.scope!r} is not a region of the hub (hub regions add); "
            f"known: {', '.join(known)}"
        )
    existed = await conn.fetchval(
        "SELECT true FROM notify_receivers WHERE name = $1", receiver.name
    )
    await conn.execute(
        """INSERT INTO notify_receivers (name, kind, target, role, scope)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (name) DO UPDATE SET kind = $2, target = $3, role = $4, scope = $5""",
        receiver.name,
        receiver.kind,
        receiver.target,
        receiver.role,
        receiver.scope,
    )
    return not existed


async def remove_receiver(conn: Connection, name: str) -> bool:
    """Remove a receiver and what it was still owed; False when there was none."""
    return bool(
        await conn.fetchval("DELETE FROM notify_receivers WHERE name = $1 RETURNING true", name)
    )


async def receivers(conn: Connection) -> list[Receiver]:
    rows = await conn.fetch(
        "SELECT name, kind, target, role, scope FROM notify_receivers ORDER BY name"
    )
    return [Receiver(r["name"], r["kind"], r["target"], r["role"], r["scope"]) for r in rows]


async def receiver_states(conn: Connection) -> list[dict[str, Any]]:
    """Each receiver with its delivered and pending counts and its last error."""
    rows = await conn.fetch(
        """SELECT r.name, r.kind, r.target, r.role, r.scope,
                  count(o.notice_id) FILTER (WHERE o.delivered_at IS NOT NULL) AS delivered,
                  count(o.notice_id) FILTER (WHERE o.delivered_at IS NULL) AS pending,
                  (SELECT last_error FROM notify_outbox e WHERE e.receiver = r.name
                      AND e.last_error IS NOT NULL ORDER BY e.next_at DESC LIMIT 1) AS last_error
             FROM notify_receivers r LEFT JOIN notify_outbox o ON o.receiver = r.name
            GROUP BY r.name ORDER BY r.name"""
    )
    return [dict(r) for r in rows]


async def enqueue(conn: Connection, notices: list[Notice], to: list[Receiver]) -> int:
    """One outbox row per (notice, covering receiver); returns the rows that were new."""
    rows = [
        (n.notice_id, r.name, n.kind, n.subject, json.dumps(n.body, default=str))
        for n in notices
        for r in to
        if covers(r, n)
    ]
    if not rows:
        return 0
    inserted = await conn.fetch(
        """INSERT INTO notify_outbox (notice_id, receiver, kind, subject, body)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[])
           ON CONFLICT (notice_id, receiver) DO NOTHING
           RETURNING notice_id""",
        *(list(column) for column in zip(*rows, strict=True)),
    )
    return len(inserted)


async def claim_due(conn: Connection, limit: int, lease_s: float) -> list[Due]:
    """Rows due now, pushed ``lease_s`` into the future while they are being sent: a notifier
    that dies mid-send leaves them to be retried after the lease, never lost."""
    rows = await conn.fetch(
        """UPDATE notify_outbox o SET next_at = now() + make_interval(secs => $2)
             FROM (SELECT notice_id, receiver FROM notify_outbox
                    WHERE delivered_at IS NULL AND next_at <= now()
                    ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
            WHERE o.notice_id = due.notice_id AND o.receiver = due.receiver
        RETURNING o.notice_id, o.receiver, o.kind, o.subject, o.body, o.attempts""",
        limit,
        lease_s,
    )
    return [
        Due(
            r["notice_id"],
            r["receiver"],
            r["kind"],
            r["subject"],
            json.loads(r["body"]),
            r["attempts"],
        )
        for r in rows
    ]


async def delivered(conn: Connection, due: Due) -> None:
    await conn.execute(
        """UPDATE notify_outbox SET delivered_at = now(), attempts = attempts + 1,
                  last_error = NULL
            WHERE notice_id = $1 AND receiver = $2""",
        due.notice_id,
        due.receiver,
    )


async def failed(conn: Connection, due: Due, error: str, retry_in_s: float) -> None:
    await conn.execute(
        """UPDATE notify_outbox SET attempts = attempts + 1, last_error = $3,
                  next_at = now() + make_interval(secs => $4)
            WHERE notice_id = $1 AND receiver = $2""",
        due.notice_id,
        due.receiver,
        error[:500],
        retry_in_s,
    )


async def pending(conn: Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM notify_outbox WHERE delivered_at IS NULL"))


async def companies(conn: Connection) -> dict[str, str]:
    """demonstration id -> company: a company's receivers get its demonstrations' notices."""
    rows = await conn.fetch("SELECT demonstration_id, company FROM demonstrations")
    return {r["demonstration_id"]: r["company"] for r in rows}


async def open_breaches(conn: Connection, older_than: datetime) -> list[dict[str, Any]]:
    """Attributable breaches still open (not acknowledged) whose window ended before
    ``older_than``, and not escalated yet."""
    rows = await conn.fetch(
        """SELECT alert_id, ts, demonstration_id, site_id, kpi_id, value, threshold
             FROM kpi_alerts
            WHERE status = 'open' AND transition = 'breach' AND attributable AND ts < $1
              AND NOT EXISTS (SELECT FROM notify_outbox o
                               WHERE o.notice_id = 'escalation:' || kpi_alerts.alert_id)
            ORDER BY ts LIMIT 1000""",
        older_than,
    )
    return [dict(r) for r in rows]
