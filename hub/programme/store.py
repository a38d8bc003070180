"""The programme in the database: applications, decisions, early ends, archiving, KPI versions.

Each step is one transaction that also writes its audit entry and tells running workers to read
the registry again (``touch``). Nothing here deletes a row: a rejected application, an ended or
archived demonstration keep everything, and no step touches another demonstration's rows.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from hub import audit
from hub.db import Connection
from hub.errors import HubError
from hub.programme.application import Application, Known
from hub.registry.load import REGISTRY_LOCK, new_kpi_version


class ProgrammeError(HubError):
    """A step the programme refuses (an unknown demonstration, one in the wrong state)."""


class UnknownDemonstration(ProgrammeError):
    pass


async def known(conn: Connection) -> Known:
    """The sites, devices and demonstrations an application is checked against."""
    return Known(
        {r["site_id"] for r in await conn.fetch("SELECT site_id FROM sites")},
        {r["device_id"] for r in await conn.fetch("SELECT device_id FROM devices")}
        | {
            d["device_id"]
            for r in await conn.fetch(
                "SELECT application FROM demonstrations WHERE status = 'applied'"
            )
            for d in json.loads(r["application"] or "{}").get("devices", [])
        },
        {
            r["demonstration_id"]
            for r in await conn.fetch("SELECT demonstration_id FROM demonstrations")
        },
    )


async def touch(conn: Connection) -> None:
    """Running workers read the registry again (a new digest for them)."""
    await conn.execute("UPDATE registry_state SET changed_at = clock_timestamp()")


async def apply(conn: Connection, application: Application, actor: str) -> None:
    """An application: the demonstration (``applied``) with its KPIs; its devices wait for the
    approval."""
    demo = application.demonstration
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", REGISTRY_LOCK)
        taken = await conn.fetch(
            "SELECT device_id FROM devices WHERE device_id = ANY($1::text[])",
            [d.device_id for d in application.devices],
        )
        if taken:
            shown = ", ".join(r["device_id"] for r in taken[:5])
            raise ProgrammeError(f"devices exist already: {shown}")
        await conn.execute(
            """INSERT INTO demonstrations (demonstration_id, company, title, technology,
                                           starts_on, ends_on, metrics, status, applied_at,
                                           application)
               VALUES ($1, $2, $3, $4, $5::date, $6::date, $7, 'applied', now(), $8::jsonb)""",
            demo.demonstration_id,
            demo.company,
            demo.title,
            demo.technology,
            datetime.fromisoformat(demo.starts_on).date(),
            datetime.fromisoformat(demo.ends_on).date(),
            list(demo.metrics),
            json.dumps(application.as_json()),
        )
        for kpi in demo.kpis:
            await conn.execute(
                """INSERT INTO kpis (demonstration_id, kpi_id, title, metric, aggregation, op,
                                     threshold, "window", window_seconds, min_samples,
                                     denominator)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
                demo.demonstration_id,
                kpi.kpi_id,
                kpi.title,
                kpi.metric,
                kpi.aggregation,
                kpi.op,
                kpi.threshold,
                kpi.window,
                kpi.window_s,
                kpi.min_samples,
                list(kpi.denominator),
            )
            await conn.execute(
                """INSERT INTO kpi_versions (demonstration_id, kpi_id, version, valid_from,
                       title, metric, aggregation, op, threshold, "window", window_seconds,
                       min_samples, denominator, reason, changed_by)
                   SELECT demonstration_id, kpi_id, 1, '-infinity', title, metric, aggregation,
                          op, threshold, "window", window_seconds, min_samples, denominator,
                          'as applied', $3
                     FROM kpis WHERE demonstration_id = $1 AND kpi_id = $2""",
                demo.demonstration_id,
                kpi.kpi_id,
                actor,
            )
        await audit.record(
            conn, actor, "demonstration.apply", demo.demonstration_id, None, application.as_json()
        )
        await touch(conn)


async def _standing(conn: Connection, demonstration_id: str) -> dict[str, Any]:
    row = await conn.fetchrow(
        """SELECT d.status AS decided, s.status, d.company, d.application, d.ended_at
             FROM demonstrations d JOIN demonstration_status s USING (demonstration_id)
            WHERE demonstration_id = $1 FOR UPDATE OF d""",
        demonstration_id,
    )
    if row is None:
        raise UnknownDemonstration(f"no demonstration {demonstration_id!r}")
    return dict(row)


async def approve(conn: Connection, demonstration_id: str, actor: str) -> int:
    """The application approved: its devices registered (their keys come with `hub access
    add-devices`). Returns how many devices."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", REGISTRY_LOCK)
        standing = await _standing(conn, demonstration_id)
        if standing["decided"] != "applied":
            raise ProgrammeError(
                f"{demonstration_id} is {standing['status']}: only an application can be approved"
            )
        devices = json.loads(standing["application"] or "{}").get("devices", [])
        taken = await conn.fetch(
            "SELECT device_id FROM devices WHERE device_id = ANY($1::text[])",
            [d["device_id"] for d in devices],
        )
        if taken:
            shown = ", ".join(r["device_id"] for r in taken[:5])
            raise ProgrammeError(
                f"{demonstration_id}: devices registered since it applied: {shown}"
            )
        await conn.executemany(
            "INSERT INTO devices (device_id, site_id, demonstration_id, model) "
            "VALUES ($1, $2, $3, $4)",
            [(d["device_id"], d["site_id"], demonstration_id, d.get("model", "")) for d in devices],
        )
        await conn.execute(
            "UPDATE demonstrations SET status = 'approved', decided_at = now() "
            "WHERE demonstration_id = $1",
            demonstration_id,
        )
        await audit.record(
            conn,
            actor,
            "demonstration.approve",
            demonstration_id,
            {"status": "applied"},
            {"status": "approved", "devices": [d["device_id"] for d in devices]},
        )
        await touch(conn)
    return len(devices)


async def reject(conn: Connection, demonstration_id: str, actor: str, reason: str) -> None:
    async with conn.transaction():
        standing = await _standing(conn, demonstration_id)
        if standing["decided"] != "applied":
            raise ProgrammeError(
                f"{demonstration_id} is {standing['status']}: only an application can be rejected"
            )
        await conn.execute(
            "UPDATE demonstrations SET status = 'rejected', decided_at = now() "
            "WHERE demonstration_id = $1",
            demonstration_id,
        )
        await audit.record(
            conn,
            actor,
            "demonstration.reject",
            demonstration_id,
            {"status": "applied"},
            {"status": "rejected", "reason": reason},
        )
        await touch(conn)


async def end(
    conn: Connection, demonstration_id: str, actor: str, at: datetime | None = None
) -> datetime:
    """Ended (early, or at its end date, said so): records dated from then on are not counted.
    Returns when it ended."""
    async with conn.transaction():
        standing = await _standing(conn, demonstration_id)
        if standing["decided"] != "approved":
            raise ProgrammeError(
                f"{demonstration_id} is {standing['status']}: only an approved (or active) "
                "demonstration can be ended"
            )
        ended: datetime = await conn.fetchval(
            """UPDATE demonstrations d SET status = 'ended',
                      ended_at = least(coalesce($2, now()), p.period_end)
                 FROM demonstration_periods p
                WHERE d.demonstration_id = $1 AND p.demonstration_id = d.demonstration_id
               RETURNING d.ended_at""",
            demonstration_id,
            at,
        )
        await audit.record(
            conn,
            actor,
            "demonstration.end",
            demonstration_id,
            {"status": standing["status"]},
            {"status": "ended", "ended_at": ended},
        )
        await touch(conn)
    return ended


async def archive(conn: Connection, demonstration_id: str, actor: str) -> None:
    async with conn.transaction():
        standing = await _standing(conn, demonstration_id)
        if standing["status"] != "ended":
            raise ProgrammeError(
                f"{demonstration_id} is {standing['status']}: only an ended demonstration "
                "can be archived"
            )
        await conn.execute(
            "UPDATE demonstrations SET status = 'archived' WHERE demonstration_id = $1",
            demonstration_id,
        )
        await audit.record(
            conn,
            actor,
            "demonstration.archive",
            demonstration_id,
            {"status": "ended"},
            {"status": "archived"},
        )
        await touch(conn)


async def change_kpi(
    conn: Connection,
    demonstration_id: str,
    kpi_id: str,
    threshold: float,
    reason: str,
    actor: str,
    valid_from: datetime | None = None,
) -> int:
    """A new version of the KPI with ``threshold`` from ``valid_from`` (now): windows starting
    from then are judged by it, every verdict before keeps its own. Returns the version."""
    if not reason.strip():
        raise ProgrammeError("--reason: say why the KPI changes (it goes into the audit trail)")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", REGISTRY_LOCK)
        await _standing(conn, demonstration_id)
        before = await conn.fetchrow(
            "SELECT threshold, min_samples FROM kpis WHERE demonstration_id = $1 AND kpi_id = $2",
            demonstration_id,
            kpi_id,
        )
        if before is None:
            raise UnknownDemonstration(f"{demonstration_id} has no KPI {kpi_id!r}")
        now = await conn.fetchval("SELECT now()")
        at = valid_from or now
        if at < now:
            raise ProgrammeError(
                f"--from {at.isoformat()}: in the past (verdicts given keep their version)"
            )
        await conn.execute(
            "UPDATE kpis SET threshold = $3 WHERE demonstration_id = $1 AND kpi_id = $2",
            demonstration_id,
            kpi_id,
            threshold,
        )
        version = await new_kpi_version(
            conn, demonstration_id, kpi_id, "kpis", reason=reason, actor=actor, valid_from=at
        )
        await audit.record(
            conn,
            actor,
            "kpi.change",
            f"{demonstration_id}/{kpi_id}",
            {"threshold": before["threshold"]},
            {"threshold": threshold, "version": version, "from": at, "reason": reason},
        )
        await touch(conn)
    return version


async def listing(conn: Connection, company: str | None = None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT d.demonstration_id, d.company, d.title, d.technology, d.starts_on, d.ends_on,
                  s.status, d.applied_at, d.decided_at, d.ended_at,
                  (SELECT count(*) FROM devices v WHERE v.demonstration_id = d.demonstration_id)
                      AS devices,
                  (SELECT count(DISTINCT site_id) FROM devices v
                    WHERE v.demonstration_id = d.demonstration_id) AS sites
             FROM demonstrations d JOIN demonstration_status s USING (demonstration_id)
            WHERE $1::text IS NULL OR d.company = $1
            ORDER BY d.demonstration_id""",
        company,
    )
    return [dict(r) for r in rows]


async def show(conn: Connection, demonstration_id: str) -> dict[str, Any]:
    found = [r for r in await listing(conn) if r["demonstration_id"] == demonstration_id]
    if not found:
        raise UnknownDemonstration(f"no demonstration {demonstration_id!r}")
    versions = await conn.fetch(
        """SELECT kpi_id, version, threshold, min_samples, valid_from, valid_until, reason,
                  changed_by FROM kpi_versions WHERE demonstration_id = $1
            ORDER BY kpi_id, version""",
        demonstration_id,
    )
    application = await conn.fetchval(
        "SELECT application FROM demonstrations WHERE demonstration_id = $1", demonstration_id
    )
    return {
        **found[0],
        "kpi_versions": [dict(v) for v in versions],
        "application": json.loads(application) if application else None,
    }
