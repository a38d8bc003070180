"""Who may read which demonstration: one rule for the API and `hub report --token`.

A role outside an endpoint's roles is refused whole (403); a demonstration outside the caller's
scope reads as one that does not exist (404), so that ids are not revealed.
"""

from __future__ import annotations

from typing import Any, Final

from hub.db import Connection
from hub.management import queries
from hub.tokens import Principal

# Who may read the programme-wide views at all; within them, a partner sees its region (the
# demonstrations running there, over its sites) and a company its demonstrations. Procurement
# reads every scorecard, KPI result and comparison, no alert, site or device, and changes
# nothing (every mutating route names its roles).
OVERVIEW_ROLES: Final = ("operator", "partner", "procurement")
DEMONSTRATION_ROLES: Final = ("operator", "partner", "company", "procurement")
ALERT_ROLES: Final = ("operator", "partner", "company")
EVIDENCE_ROLES: Final = ("operator", "company", "procurement")
COMPARE_ROLES: Final = ("operator", "procurement")
# A company's devices and rejected records: its own; operators every company's.
SELF_SERVICE_ROLES: Final = ("operator", "company")


async def visible_demonstration(
    conn: Connection, who: Principal, demonstration_id: str
) -> dict[str, Any] | None:
    """The demonstration if ``who`` may read it (an operator or procurement any, a company its
    own, a partner one with a site in its region), else None."""
    demo = await queries.demonstration(conn, demonstration_id)
    if demo is None:
        return None
    if who.company is not None and demo["company"] != who.company:
        return None
    if who.region is not None and not await queries.runs_in_region(
        conn, demonstration_id, who.region
    ):
        return None
    return demo
