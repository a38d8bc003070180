"""``hub report``: a demonstration's KPI scorecard as text, CSV or JSON, for a procurement file
(the scorecard itself is ``hub.management.scorecard``, which the API serves too)."""

from __future__ import annotations

import csv
import io
import json

from hub.db import Connection
from hub.errors import HubError
from hub.management import scope
from hub.management.scorecard import Scorecard, ScorecardKpi, UnknownDemonstration
from hub.tokens import Principal, authenticate


class ReportRefused(HubError):
    """The token given may not read scorecards."""


async def check_scope(
    conn: Connection,
    token: str,
    demonstration_id: str,
    roles: tuple[str, ...] = scope.DEMONSTRATION_ROLES,
) -> Principal:
    """Refuse what the token may not read, as the API does (``hub.management.scope``): a
    company reads its own demonstrations, a partner those in its region (over its sites); any
    other is "not in the registry". Returns who asks."""
    principal = await authenticate(conn, token)
    if principal is None:
        raise ReportRefused("the token is not valid (unknown, revoked or mistyped)")
    if principal.role not in roles:
        raise ReportRefused(f"a {principal.label} token may not read this")
    if await scope.visible_demonstration(conn, principal, demonstration_id) is None:
        raise UnknownDemonstration(f"demonstration {demonstration_id!r} is not in the registry")
    return principal


CSV_COLUMNS = (
    "demonstration_id",
    "company",
    "title",
    "technology",
    "starts_on",
    "ends_on",
    "sites",
    "kpi_id",
    "kpi_title",
    "rule",
    "window",
    "windows_judged",
    "passed",
    "failed",
    "insufficient",
    "not_attributable",
    "pass_rate_pct",
    "latest_status",
    "latest_window_start",
)


def rule(kpi: ScorecardKpi) -> str:
    if kpi.aggregation == "ratio":
        return f"{kpi.metric} / ({' + '.join(kpi.denominator)}) {kpi.op} {kpi.threshold:g}"
    return f"{kpi.aggregation}({kpi.metric}) {kpi.op} {kpi.threshold:g}"


def as_json(card: Scorecard) -> str:
    return json.dumps(card.model_dump(mode="json"), indent=2)


def as_csv(card: Scorecard) -> str:
    """One row per KPI, the demonstration's fields repeated: opens as is in a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for kpi in card.kpis:
        writer.writerow(
            [
                card.demonstration_id,
                card.company,
                card.title,
                card.technology,
                card.starts_on,
                card.ends_on,
                card.sites,
                kpi.kpi_id,
                kpi.title,
                rule(kpi),
                kpi.window,
                kpi.windows_judged,
                kpi.passed,
                kpi.failed,
                kpi.insufficient,
                kpi.not_attributable,
                "" if kpi.pass_rate_pct is None else kpi.pass_rate_pct,
                kpi.latest_status or "",
                kpi.latest_window_start.isoformat() if kpi.latest_window_start else "",
            ]
        )
    return out.getvalue()


def as_text(card: Scorecard) -> str:
    lines = [
        f"{card.title} ({card.demonstration_id})",
        f"company {card.company}, technology {card.technology}, "
        f"period {card.starts_on} to {card.ends_on} (Korean days), {card.sites} sites"
        + (
            f" in {card.region} (every figure over {card.region}'s sites only)"
            if card.region
            else ""
        ),
        "KPIs are judged on the demonstration's own devices, inside its period only"
        + (
            f"; {card.minutes_outside_period:,} site-minutes reported outside it were "
            "aggregated, not judged"
            if card.minutes_outside_period
            else ""
        ),
        "",
        f"{'KPI':22} {'rule':42} {'window':6} {'judged':>7} {'passed':>7} {'failed':>7} "
        f"{'pass %':>7}  latest",
    ]
    for kpi in card.kpis:
        rate = "-" if kpi.pass_rate_pct is None else f"{kpi.pass_rate_pct:.1f}"
        lines.append(
            f"{kpi.kpi_id:22} {rule(kpi):42} {kpi.window:6} {kpi.windows_judged:7} "
            f"{kpi.passed:7} {kpi.failed:7} {rate:>7}  {kpi.latest_status or '-'}"
        )
    left_out = sum(kpi.not_attributable for kpi in card.kpis)
    if left_out:
        lines += [
            "",
            f"{left_out:,} windows judged before verdicts were per demonstration, at sites shared "
            "with other demonstrations, are left out (not attributable)",
        ]
    return "\n".join(lines)
