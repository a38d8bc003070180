"""What the public page shows, in one query: what is demonstrated where, by whom, its period,
status and daily compliance. Never a raw value, a site id or an alert."""

from __future__ import annotations

from typing import Any, Final

from hub.db import Connection

# Days of daily compliance shown, counting today (Korean days).
PUBLIC_DAYS: Final = 7

SUMMARY = f"""
SELECT d.demonstration_id, d.company, d.title, d.technology, st.status, d.starts_on, d.ends_on,
       (SELECT count(DISTINCT v.site_id) FROM devices v
         WHERE v.demonstration_id = d.demonstration_id) AS sites,
       (SELECT coalesce(json_agg(x ORDER BY x.region, x.district), '[]')
          FROM (SELECT DISTINCT s.region, s.district FROM devices v JOIN sites s USING (site_id)
                 WHERE v.demonstration_id = d.demonstration_id) x)::text AS districts,
       (SELECT coalesce(json_agg(y ORDER BY y.day), '[]')
          FROM (SELECT (r.window_start AT TIME ZONE 'Asia/Seoul')::date AS day,
                       count(*) FILTER (WHERE r.status = 'pass') AS passed,
                       count(*) FILTER (WHERE r.status = 'fail') AS failed
                  FROM kpi_results r
                 WHERE r.demonstration_id = d.demonstration_id AND r.attributable
                   AND r.window_start >= date_trunc('day', now() AT TIME ZONE 'Asia/Seoul')
                                         AT TIME ZONE 'Asia/Seoul'
                                         - INTERVAL '{PUBLIC_DAYS - 1} days'
                 GROUP BY 1) y)::text AS daily
  FROM demonstrations d
  JOIN demonstration_status st USING (demonstration_id)
 WHERE st.status IN ('approved', 'active', 'ended', 'archived')
 ORDER BY st.status = 'active' DESC, d.starts_on DESC, d.demonstration_id
"""


async def public_summary(conn: Connection) -> list[dict[str, Any]]:
    """Every demonstration the programme approved, as the public may see it."""
    return [dict(r) for r in await conn.fetch(SUMMARY)]
