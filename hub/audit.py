"""The audit trail: who changed what in the registry, access, tokens, receivers and regions, when,
before and after (migration 0013's ``audit_log``, append-only: a trigger refuses any update or
delete, whoever asks).

Every change is recorded in the same transaction as the change itself, so the trail holds exactly
what happened. ``who`` is the token's name for the API (``token:<name>``) and the user running a
command for the CLI (``cli:<user>``, or ``HUB_ACTOR``).
"""

from __future__ import annotations

import getpass
import json
import os
from datetime import datetime
from typing import Any

from hub.db import Connection


def cli_actor() -> str:
    """Who runs this command: HUB_ACTOR when set (a deployment names its operator), else the
    system user."""
    named = os.environ.get("HUB_ACTOR", "").strip()
    if named:
        return named[:128]
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name on this system (a container, say)
        return f"cli:uid-{os.getuid()}"


async def record(
    conn: Connection,
    actor: str,
    action: str,
    subject: str,
    before: Any,
    after: Any,
) -> None:
    """One entry; JSON-able ``before`` and ``after`` (None for a creation or a removal)."""
    await conn.execute(
        "INSERT INTO audit_log (actor, action, subject, before, after) "
        "VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)",
        actor,
        action,
        subject,
        None if before is None else json.dumps(before, default=str),
        None if after is None else json.dumps(after, default=str),
    )


async def entries(
    conn: Connection, since: datetime | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """The trail from ``since`` on (everything without it), oldest first, at most ``limit``."""
    rows = await conn.fetch(
        """SELECT id, at, actor, action, subject, before, after FROM audit_log
            WHERE $1::timestamptz IS NULL OR at >= $1
            ORDER BY id LIMIT $2""",
        since,
        limit,
    )
    return [
        {
            "id": r["id"],
            "at": r["at"],
            "actor": r["actor"],
            "action": r["action"],
            "subject": r["subject"],
            "before": None if r["before"] is None else json.loads(r["before"]),
            "after": None if r["after"] is None else json.loads(r["after"]),
        }
        for r in rows
    ]
