"""Regions are data: ``hub regions add CODE NAME`` makes a third province a region of the hub with
no release. A region is a row (``regions``); with it come its partner topics
(``partner.<code>.kpi-results.v1``, ``partner.<code>.kpi-alerts.v1``, created here and by every
worker at start), the token and receiver scope ``partner:<code>``, ``hub access add-partner
<code>``, its rows in the management views, and the worker's writes to its topics (granted by
prefix, ``partner.``). Sites join it through the registry files (``region`` column).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from hub import audit, principals, topics, topicsetup
from hub.db import Connection
from hub.errors import HubError
from hub.settings import Settings

CODE: Final = re.compile(r"^[a-z][a-z0-9]{1,31}$")


class RegionError(HubError):
    """A region `hub regions` refuses; says why."""


@dataclass(frozen=True, slots=True)
class Region:
    code: str
    name: str


async def listing(conn: Connection) -> list[Region]:
    rows = await conn.fetch("SELECT code, name FROM regions ORDER BY code")
    return [Region(r["code"], r["name"]) for r in rows]


async def codes(conn: Connection) -> list[str]:
    return [r.code for r in await listing(conn)]


async def exists(conn: Connection, code: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM regions WHERE code = $1", code))


async def add(conn: Connection, settings: Settings, code: str, name: str, actor: str) -> list[str]:
    """The region, and its partner topics; returns the topics created now."""
    if not CODE.match(code):
        raise RegionError(f"CODE {code!r}: a-z then a-z or 0-9, 2 to 32 (e.g. jeonbuk)")
    if not name.strip() or len(name) > 200:
        raise RegionError("NAME: its name, up to 200 characters (e.g. 'North Jeolla Province')")
    async with conn.transaction():
        existed = await conn.fetchval("SELECT name FROM regions WHERE code = $1", code)
        if existed is not None:
            raise RegionError(f"region {code!r} exists already ({existed})")
        await conn.execute("INSERT INTO regions (code, name) VALUES ($1, $2)", code, name.strip())
        await audit.record(conn, actor, "region.add", code, None, {"name": name.strip()})
        await conn.execute("UPDATE registry_state SET changed_at = clock_timestamp()")
    return await topicsetup.ensure_topics(
        settings.kafka_bootstrap,
        settings.partitions,
        topics.partner_topics([code]),
        replication_factor=settings.replication_factor,
        **principals.security(settings),
    )
