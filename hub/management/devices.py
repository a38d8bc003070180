"""A company's own devices and why their records were refused: what it reads without asking an
operator. Device activity is counted when a minute's windows close (``device_minutes``), so a
device's last report shows once its minute has closed (the allowed lateness after it)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

from hub.db import Connection
from hub.management.history import TimeRange
from hub.registry.model import KST

Row = dict[str, Any]
REJECTIONS_LIMIT: Final = 1_000
REJECTIONS_MAX_LIMIT: Final = 10_000

_OF_COMPANY = (
    "($1::text IS NULL OR {column} IN (SELECT v.device_id FROM devices v "
    "JOIN demonstrations d USING (demonstration_id) WHERE d.company = $1))"
)


def today_kst(now: datetime) -> datetime:
    """The start of the Korean day ``now`` falls in: what "today" means to the programme."""
    local = now.astimezone(KST)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


async def devices(
    conn: Connection,
    company: str | None,
    demonstration_id: str | None,
    since: datetime,
) -> list[Row]:
    """Each device (a company's own; of one demonstration, when given): where it is, when its
    newest counted record was made, its records accepted and rejected since ``since`` (by
    reason)."""
    rows = await conn.fetch(
        """SELECT v.device_id, v.demonstration_id, v.site_id, v.model,
                  (SELECT m.last_event_at FROM device_minutes m WHERE m.device_id = v.device_id
                    ORDER BY m.bucket DESC LIMIT 1) AS last_seen,
                  coalesce((SELECT sum(m.records) FROM device_minutes m
                             WHERE m.device_id = v.device_id AND m.bucket >= $3), 0)::bigint
                      AS accepted_today,
                  coalesce((SELECT jsonb_object_agg(x.reason, x.n) FROM
                              (SELECT r.reason, count(*) AS n FROM rejections r
                                WHERE r.device_id = v.device_id AND r.at >= $3
                                GROUP BY r.reason) x), '{}')::text AS rejected_today_by_reason
             FROM devices v JOIN demonstrations d USING (demonstration_id)
            WHERE ($1::text IS NULL OR d.company = $1)
              AND ($2::text IS NULL OR v.demonstration_id = $2)
            ORDER BY v.demonstration_id, v.site_id, v.device_id""",
        company,
        demonstration_id,
        since,
    )
    out = []
    for r in rows:
        row = dict(r)
        by_reason = json.loads(row.pop("rejected_today_by_reason"))
        out.append(
            {
                **row,
                "rejected_today": sum(by_reason.values()),
                "rejected_today_by_reason": by_reason,
            }
        )
    return out


async def rejections(
    conn: Connection,
    company: str | None,
    span: TimeRange,
    reason: str | None,
    device_id: str | None,
    limit: int,
) -> list[Row]:
    """Rejected records naming the company's devices (every one, for an operator), newest
    first; ``limit + 1`` rows at most, so the caller can tell a full answer from a cut one."""
    rows = await conn.fetch(
        f"""SELECT at, device_id, site_id, event_ts, reason, detail, partition, "offset"
              FROM rejections
             WHERE at >= $2 AND at < $3 AND ($4::text IS NULL OR reason = $4)
               AND ($5::text IS NULL OR device_id = $5)
               AND {_OF_COMPANY.format(column="device_id")}
             ORDER BY at DESC, partition, "offset"
             LIMIT $6""",
        company,
        span.start,
        span.end,
        reason,
        device_id,
        limit + 1,
    )
    return [dict(r) for r in rows]


async def rejected_by_reason(conn: Connection, company: str | None, since: datetime) -> list[Row]:
    """The company's rejections since ``since`` counted by reason, most first."""
    rows = await conn.fetch(
        f"""SELECT reason, count(*) AS records, count(DISTINCT device_id) AS devices
              FROM rejections
             WHERE at >= $2 AND {_OF_COMPANY.format(column="device_id")}
             GROUP BY reason ORDER BY 2 DESC, 1""",
        company,
        since,
    )
    return [dict(r) for r in rows]
