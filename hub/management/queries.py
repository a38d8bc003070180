"""The SQL behind the API and `hub report`: one function a question, parameters always bound.

"Latest" always means newest by event time (window or bucket), never last received.
"""

from __future__ import annotations

from typing import Any

from hub.db import Connection

Row = dict[str, Any]


def of_company(param: str) -> str:
    """Rows of the demonstrations of the company in ``param`` ("$2"), or all when it is NULL."""
    return (
        f"({param}::text IS NULL OR demonstration_id IN "
        f"(SELECT demonstration_id FROM demonstrations WHERE company = {param}))"
    )


def in_region(column: str, param: str) -> str:
    """Rows whose ``column`` (a site id) lies in the region in ``param``, or all when NULL."""
    return (
        f"({param}::text IS NULL OR {column} IN (SELECT site_id FROM sites WHERE region = {param}))"
    )


async def overview(conn: Connection, region: str | None) -> list[Row]:
    rows = await conn.fetch(
        "SELECT * FROM management_overview WHERE $1::text IS NULL OR region = $1 "
        "ORDER BY region, district",
        region,
    )
    return [dict(r) for r in rows]


async def site(conn: Connection, site_id: str) -> Row | None:
    row = await conn.fetchrow(
        "SELECT s.*, l.last_event_at FROM sites s LEFT JOIN site_last_seen l USING (site_id) "
        "WHERE s.site_id = $1",
        site_id,
    )
    return dict(row) if row else None


async def site_devices(conn: Connection, site_id: str, company: str | None = None) -> list[Row]:
    rows = await conn.fetch(
        "SELECT device_id, demonstration_id, model FROM devices WHERE site_id = $1 "
        f"AND {of_company('$2')} ORDER BY device_id",
        site_id,
        company,
    )
    return [dict(r) for r in rows]


async def latest_aggregates(
    conn: Connection, site_id: str, company: str | None = None
) -> list[Row]:
    """The newest window of each metric of each demonstration at the site (a company: of its
    own demonstrations only)."""
    rows = await conn.fetch(
        f"""SELECT DISTINCT ON (demonstration_id, metric) demonstration_id, metric, bucket,
                  count, sum, min, max, sum / count AS mean, p50, p95, p99
             FROM site_aggregates
            WHERE site_id = $1 AND bucket > now() - INTERVAL '7 days' AND {of_company("$2")}
            ORDER BY demonstration_id, metric, bucket DESC""",
        site_id,
        company,
    )
    return [dict(r) for r in rows]


async def latest_kpi_statuses(
    conn: Connection, site_id: str, company: str | None = None
) -> list[Row]:
    rows = await conn.fetch(
        f"""SELECT DISTINCT ON (demonstration_id, kpi_id)
                  demonstration_id, kpi_id, window_start, window_end, value, threshold, status,
                  samples
             FROM kpi_results
            WHERE site_id = $1 AND {of_company("$2")}
            ORDER BY demonstration_id, kpi_id, window_start DESC""",
        site_id,
        company,
    )
    return [dict(r) for r in rows]


async def demonstration(conn: Connection, demonstration_id: str) -> Row | None:
    row = await conn.fetchrow(
        """SELECT d.*, p.period_start, p.period_end, s.status AS lifecycle,
                  (SELECT count(DISTINCT site_id) FROM devices v
                    WHERE v.demonstration_id = d.demonstration_id) AS sites
             FROM demonstrations d JOIN demonstration_periods p USING (demonstration_id)
             JOIN demonstration_status s USING (demonstration_id)
            WHERE demonstration_id = $1""",
        demonstration_id,
    )
    return dict(row) if row else None


async def runs_in_region(conn: Connection, demonstration_id: str, region: str) -> bool:
    """The demonstration has a device at a site of the region."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM devices v JOIN sites s USING (site_id) "
            "WHERE v.demonstration_id = $1 AND s.region = $2)",
            demonstration_id,
            region,
        )
    )


async def sites_of(conn: Connection, demonstration_id: str, region: str | None = None) -> int:
    """How many sites host the demonstration's devices (in the region, when given)."""
    return int(
        await conn.fetchval(
            "SELECT count(DISTINCT site_id) FROM devices "
            f"WHERE demonstration_id = $1 AND {in_region('site_id', '$2')}",
            demonstration_id,
            region,
        )
    )


async def minutes_outside_period(
    conn: Connection, demonstration_id: str, region: str | None = None
) -> int:
    """Site-minutes of the demonstration's devices aggregated outside its period (not judged)."""
    return int(
        await conn.fetchval(
            f"""SELECT count(DISTINCT (a.site_id, a.bucket)) FROM site_aggregates a
                 JOIN demonstration_periods p USING (demonstration_id)
                WHERE a.demonstration_id = $1 AND {in_region("a.site_id", "$2")}
                  AND (a.bucket < p.period_start OR a.bucket >= p.period_end)""",
            demonstration_id,
            region,
        )
    )


async def scorecard_kpis(
    conn: Connection, demonstration_id: str, region: str | None = None
) -> list[Row]:
    """The scorecard's rows (``demonstration_scorecard``), over one region's sites when given."""
    rows = await conn.fetch(
        "SELECT * FROM demonstration_scorecard_in($2) WHERE demonstration_id = $1 ORDER BY kpi_id",
        demonstration_id,
        region,
    )
    return [dict(r) for r in rows]


async def scorecard_versions(
    conn: Connection, demonstration_id: str, region: str | None = None
) -> list[Row]:
    """Each KPI version of the demonstration, its period and the verdicts judged by it."""
    rows = await conn.fetch(
        f"""SELECT v.kpi_id, v.version, v.threshold, v.min_samples,
                  CASE WHEN isfinite(v.valid_from) THEN v.valid_from END AS valid_from,
                  v.valid_until, v.reason, v.changed_by,
                  count(r.status) FILTER (WHERE r.attributable) AS windows_judged,
                  count(r.status) FILTER (WHERE r.attributable AND r.status = 'pass') AS passed,
                  count(r.status) FILTER (WHERE r.attributable AND r.status = 'fail') AS failed
             FROM kpi_versions v
             JOIN demonstration_periods p USING (demonstration_id)
             LEFT JOIN kpi_results r
                    ON r.demonstration_id = v.demonstration_id AND r.kpi_id = v.kpi_id
                   AND r.kpi_version = v.version
                   AND r.window_start >= p.period_start AND r.window_end <= p.period_end
                   AND {in_region("r.site_id", "$2")}
            WHERE v.demonstration_id = $1
            GROUP BY v.kpi_id, v.version, v.threshold, v.min_samples, v.valid_from,
                     v.valid_until, v.reason, v.changed_by
            ORDER BY v.kpi_id, v.version""",
        demonstration_id,
        region,
    )
    return [dict(r) for r in rows]


async def site_hosts_company(conn: Connection, site_id: str, company: str) -> bool:
    """The site has a device of one of the company's demonstrations."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM devices v JOIN demonstrations d USING "
            "(demonstration_id) WHERE v.site_id = $1 AND d.company = $2)",
            site_id,
            company,
        )
    )


async def demonstrations(
    conn: Connection, company: str | None = None, region: str | None = None
) -> list[Row]:
    """Every demonstration (a company's own; those running in a region, with their figures over
    its sites), its sites and KPI windows of the last 24 hours, most failing first."""
    rows = await conn.fetch(
        f"""SELECT d.demonstration_id, d.company, d.title, d.technology, st.status,
                  d.starts_on, d.ends_on,
                  (SELECT count(DISTINCT v.site_id) FROM devices v
                    WHERE v.demonstration_id = d.demonstration_id
                      AND {in_region("v.site_id", "$2")}) AS sites,
                  count(r.status) FILTER (WHERE r.status = 'pass') AS kpi_pass_24h,
                  count(r.status) FILTER (WHERE r.status = 'fail') AS kpi_fail_24h,
                  (SELECT count(*) FROM kpi_alerts a WHERE a.demonstration_id = d.demonstration_id
                      AND a.status = 'open' AND {in_region("a.site_id", "$2")}) AS open_alerts
             FROM demonstrations d
             JOIN demonstration_status st USING (demonstration_id)
             LEFT JOIN kpi_results r ON r.demonstration_id = d.demonstration_id
                  AND r.window_end > now() - INTERVAL '24 hours'
                  AND {in_region("r.site_id", "$2")}
            WHERE ($1::text IS NULL OR d.company = $1)
              AND ($2::text IS NULL OR EXISTS (
                    SELECT 1 FROM devices v JOIN sites t USING (site_id)
                     WHERE v.demonstration_id = d.demonstration_id AND t.region = $2))
            GROUP BY d.demonstration_id, st.status
            ORDER BY count(r.status) FILTER (WHERE r.status = 'fail') DESC, d.demonstration_id""",
        company,
        region,
    )
    return [dict(r) for r in rows]


async def technologies(conn: Connection) -> list[str]:
    rows = await conn.fetch("SELECT DISTINCT technology FROM demonstrations ORDER BY 1")
    return [r["technology"] for r in rows]


async def comparison(conn: Connection, technology: str) -> list[Row]:
    """The approved (or later) demonstrations of a technology, each with its period, sites,
    scorecard rows and, once it has ended, its evidence pack's SHA-256."""
    demos = await conn.fetch(
        """SELECT d.demonstration_id, d.company, d.title, st.status, d.starts_on, d.ends_on,
                  (SELECT count(DISTINCT v.site_id) FROM devices v
                    WHERE v.demonstration_id = d.demonstration_id) AS sites,
                  e.sha256 AS evidence_sha256, e.frozen_at AS evidence_frozen_at
             FROM demonstrations d
             JOIN demonstration_status st USING (demonstration_id)
             LEFT JOIN evidence_packs e USING (demonstration_id)
            WHERE d.technology = $1 AND st.status NOT IN ('applied', 'rejected')
            ORDER BY d.demonstration_id""",
        technology,
    )
    kpis = await conn.fetch(
        "SELECT * FROM demonstration_scorecard WHERE demonstration_id = ANY($1::text[]) "
        "ORDER BY demonstration_id, kpi_id",
        [d["demonstration_id"] for d in demos],
    )
    by_demo: dict[str, list[Row]] = {}
    for k in kpis:
        by_demo.setdefault(k["demonstration_id"], []).append(dict(k))
    return [{**d, "kpis": by_demo.get(d["demonstration_id"], [])} for d in demos]


async def by_technology(conn: Connection) -> list[Row]:
    """Every approved (or later) demonstration by technology, with its pass rate over all its
    KPIs and its evidence pack's SHA-256 once ended: procurement's page."""
    rows = await conn.fetch(
        """SELECT d.technology, d.demonstration_id, d.company, st.status, d.starts_on, d.ends_on,
                  (SELECT count(DISTINCT v.site_id) FROM devices v
                    WHERE v.demonstration_id = d.demonstration_id) AS sites,
                  (SELECT round(100.0 * sum(c.passed) / nullif(sum(c.passed + c.failed), 0), 1)
                     FROM demonstration_scorecard c
                    WHERE c.demonstration_id = d.demonstration_id) AS pass_rate_pct,
                  e.sha256 AS evidence_sha256
             FROM demonstrations d
             JOIN demonstration_status st USING (demonstration_id)
             LEFT JOIN evidence_packs e USING (demonstration_id)
            WHERE st.status NOT IN ('applied', 'rejected')
            ORDER BY d.technology, d.demonstration_id"""
    )
    return [dict(r) for r in rows]


async def open_alert_count(
    conn: Connection, *, region: str | None = None, company: str | None = None
) -> int:
    """Open alerts in the caller's scope: the same rows ``alerts`` lists."""
    return int(
        await conn.fetchval(
            f"""SELECT count(*) FROM kpi_alerts
                 WHERE status = 'open' AND {in_region("site_id", "$1")}
                   AND {of_company("$2")}""",
            region,
            company,
        )
    )


async def alerts(
    conn: Connection,
    status: str | None,
    demonstration_id: str | None,
    site_id: str | None,
    limit: int,
    *,
    region: str | None = None,
    company: str | None = None,
) -> list[Row]:
    rows = await conn.fetch(
        f"""SELECT alert_id, ts, demonstration_id, site_id, kpi_id, transition, value, threshold,
                  status, acknowledged_by, acknowledged_at, note, resolved_at
             FROM kpi_alerts
            WHERE ($1::text IS NULL OR status = $1)
              AND ($2::text IS NULL OR demonstration_id = $2)
              AND ($3::text IS NULL OR site_id = $3)
              AND ($5::text IS NULL OR site_id IN (SELECT site_id FROM sites WHERE region = $5))
              AND {of_company("$6")}
            ORDER BY ts DESC, alert_id
            LIMIT $4""",
        status,
        demonstration_id,
        site_id,
        limit,
        region,
        company,
    )
    return [dict(r) for r in rows]


async def alert(conn: Connection, alert_id: str) -> Row | None:
    row = await conn.fetchrow(
        """SELECT alert_id, ts, demonstration_id, site_id, kpi_id, transition, value, threshold,
                  status, acknowledged_by, acknowledged_at, note, resolved_at
             FROM kpi_alerts WHERE alert_id = $1 ORDER BY ts DESC LIMIT 1""",
        alert_id,
    )
    return dict(row) if row else None


async def acknowledge(conn: Connection, alert_id: str, by: str, note: str) -> Row | None:
    """Open -> acknowledged; None when the alert is not open (unknown, already acknowledged or
    resolved: the caller tells which)."""
    row = await conn.fetchrow(
        """UPDATE kpi_alerts SET status = 'acknowledged', acknowledged_by = $2,
                  acknowledged_at = now(), note = $3
            WHERE alert_id = $1 AND status = 'open'
        RETURNING alert_id, ts, demonstration_id, site_id, kpi_id, transition, value, threshold,
                  status, acknowledged_by, acknowledged_at, note, resolved_at""",
        alert_id,
        by,
        note,
    )
    return dict(row) if row else None
