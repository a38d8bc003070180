"""The management view at ``/``: server-rendered HTML, refreshed by a small script.

The script re-fetches the page's main section (``/?part=main``) every 15 seconds and swaps it in:
one renderer, no front-end build, and the page works without JavaScript too. Below it, a site's
metric over a time range (``/?site=&metric=&hours=``), drawn by the script from the history
endpoint: the one part that needs JavaScript.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from hub.registry.model import GWANGJU_DISTRICTS, JEONNAM_MUNICIPALITIES, district_label

Row = dict[str, Any]


def colour(compliance: float | None) -> str:
    if compliance is None:
        return "#b8bec6"  # no judged KPI yet
    if compliance >= 95:
        return "#2e9e5b"
    if compliance >= 80:
        return "#e3a21a"
    return "#d64545"


def _map(title: str, region: str, centres: dict[str, tuple[float, float]], rows: list[Row]) -> str:
    """An SVG of the region's districts at their centres, sized by sites, coloured by compliance."""
    width, height, pad = 520, 400, 64
    lats = [c[0] for c in centres.values()]
    lons = [c[1] for c in centres.values()]
    lat0, lat1, lon0, lon1 = min(lats), max(lats), min(lons), max(lons)

    def xy(lat: float, lon: float) -> tuple[float, float]:
        x = pad + (lon - lon0) / ((lon1 - lon0) or 1) * (width - 2 * pad)
        y = height - pad - (lat - lat0) / ((lat1 - lat0) or 1) * (height - 2 * pad)
        return x, y

    by_district = {r["district"]: r for r in rows if r["region"] == region}
    shapes = []
    for district, (lat, lon) in sorted(centres.items()):
        row = by_district.get(district, {})
        x, y = xy(lat, lon)
        radius = 4 + 0.9 * math.sqrt(row.get("sites", 0) or 0)
        compliance = row.get("compliance_pct")
        shown = "no data" if compliance is None else f"{compliance:.1f}%"
        label = district_label(region, district)
        shapes.append(
            f'<g class="district" data-region="{region}" data-district="{district}" '
            f'data-compliance="{shown}">'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{colour(compliance)}" '
            f'fill-opacity="0.85" stroke="#333" stroke-width="0.6"><title>{escape(label)}: '
            f"{shown}, {row.get('sites_reporting', 0)} of {row.get('sites', 0)} sites reporting"
            f"</title></circle>"
            f'<text x="{x:.1f}" y="{y + radius + 11:.1f}" text-anchor="middle">{escape(label)} '
            f"{shown}</text></g>"
        )
    return (
        f"<figure><figcaption>{escape(title)}</figcaption>"
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f"{''.join(shapes)}</svg></figure>"
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return escape(str(value))


def _table(columns: Iterable[tuple[str, str]], rows: list[Row], empty: str) -> str:
    columns = list(columns)
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(label)}</th>" for _, label in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(key))}</td>" for key, _ in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass(frozen=True, slots=True)
class View:
    """What one caller's page shows: each part only when its role may read it (None: not)."""

    label: str  # the token's role, as the page names it
    overview: list[Row] | None
    demonstrations: list[Row]
    alerts: list[Row] | None
    open_alerts: int
    generated_at: datetime
    devices: list[Row] | None = None  # a company's own, with when each last reported
    rejected: list[Row] | None = None  # a company's rejections today, by reason
    compare: list[Row] | None = None  # procurement's: every demonstration by technology


def _totals(view: View) -> str:
    """The header: counted from the same rows as the tables below, so that they agree."""
    if view.overview is not None:
        sites = sum(r["sites"] for r in view.overview)
        reporting = sum(r["sites_reporting"] for r in view.overview)
        passed = sum(r["kpi_pass"] for r in view.overview)
        failed = sum(r["kpi_fail"] for r in view.overview)
        where = "sites reporting (last hour)"
    else:
        seen = {
            d["site_id"]
            for d in view.devices or []
            if d["last_seen"] is not None
            and (view.generated_at - d["last_seen"]).total_seconds() < 3600
        }
        sites = len({d["site_id"] for d in view.devices or []})
        reporting = len(seen)
        passed = sum(d["kpi_pass_24h"] for d in view.demonstrations)
        failed = sum(d["kpi_fail_24h"] for d in view.demonstrations)
        where = "of your sites reporting (last hour)"
    decided = passed + failed
    compliance = f"{100 * passed / decided:.1f}%" if decided else "no data"
    alerts = (
        f"<div><b>{view.open_alerts:,}</b> open alerts</div>" if view.alerts is not None else ""
    )
    updated = f"{view.generated_at:%Y-%m-%d %H:%M:%S}"
    return f"""
<section class="totals">
  <div><b>{reporting:,}</b> of {sites:,} {where}</div>
  <div><b>{compliance}</b> KPI compliance (last 24 h: {passed:,} pass, {failed:,} fail)</div>
  {alerts}
  <div class="muted">{escape(view.label)} view, updated {updated} UTC</div>
</section>"""


def _regions(overview: list[Row]) -> str:
    gwangju = {d: (lat, lon) for d, (lat, lon, _, _) in GWANGJU_DISTRICTS.items()}
    jeonnam = {d: (lat, lon) for d, (lat, lon, _) in JEONNAM_MUNICIPALITIES.items()}
    rows = [{**r, "name": district_label(r["region"], r["district"])} for r in overview]
    regions = {r["region"] for r in overview}
    maps = "".join(
        _map(title, region, centres, overview)
        for title, region, centres in (
            ("Gwangju: five districts", "gwangju", gwangju),
            ("South Jeolla: 22 cities and counties", "jeonnam", jeonnam),
        )
        if region in regions or not overview
    )
    table = _table(
        [
            ("region", "Region"),
            ("name", "District"),
            ("sites", "Sites"),
            ("sites_reporting", "Reporting"),
            ("kpi_pass", "KPI pass"),
            ("kpi_fail", "KPI fail"),
            ("compliance_pct", "Compliance %"),
            ("last_event_at", "Last event (UTC)"),
        ],
        rows,
        "No sites registered yet: run `hub registry load`.",
    )
    return f"""
<section class="maps">{maps}</section>
<section>
  <h2>Regions and districts</h2>
  {table}
</section>"""


DEMONSTRATION_COLUMNS = (
    ("demonstration_id", "Demonstration"),
    ("company", "Company"),
    ("title", "Title"),
    ("status", "Status"),
    ("sites", "Sites"),
    ("kpi_fail_24h", "KPI fail (24 h)"),
    ("kpi_pass_24h", "KPI pass (24 h)"),
    ("open_alerts", "Open alerts"),
)


def render_main(view: View) -> str:
    heading = {
        "company": "Your demonstrations",
        "partner": "Demonstrations in your region (counted over its sites)",
    }.get(view.label.partition(":")[0], "Demonstrations (most failing first)")
    parts = [_totals(view)]
    parts.append(
        f'<section id="demonstrations"><h2>{escape(heading)}</h2>'
        + _table(DEMONSTRATION_COLUMNS, view.demonstrations, "No demonstration to show yet.")
        + "</section>"
    )
    if view.devices is not None:
        parts.append(
            '<section id="devices"><h2>Your devices</h2>'
            + _table(
                [
                    ("device_id", "Device"),
                    ("demonstration_id", "Demonstration"),
                    ("site_id", "Site"),
                    ("last_seen", "Last seen (UTC)"),
                    ("accepted_today", "Accepted today (KST)"),
                    ("rejected_today", "Rejected today"),
                ],
                view.devices,
                "No devices registered yet.",
            )
            + "</section>"
        )
    if view.rejected is not None:
        parts.append(
            '<section id="rejected"><h2>Your records refused today, by reason</h2>'
            + _table(
                [("reason", "Reason"), ("records", "Records"), ("devices", "Devices")],
                view.rejected,
                "None of your records was refused today.",
            )
            + '<p class="muted">Each record, its device and what was wrong: '
            '<a href="/api/v1/rejections">/api/v1/rejections</a> (the reasons: '
            '<a href="/docs">/docs</a>).</p></section>'
        )
    if view.compare is not None:
        parts.append(
            '<section id="compare"><h2>By technology</h2>'
            + _table(
                [
                    ("technology", "Technology"),
                    ("demonstration_id", "Demonstration"),
                    ("company", "Company"),
                    ("status", "Status"),
                    ("starts_on", "From"),
                    ("ends_on", "To"),
                    ("sites", "Sites"),
                    ("pass_rate_pct", "KPI pass rate %"),
                    ("evidence_sha256", "Evidence pack SHA-256"),
                ],
                view.compare,
                "No demonstration approved yet.",
            )
            + "</section>"
        )
    if view.overview is not None:
        parts.append(_regions(view.overview))
    if view.alerts is not None:
        shown = f" (the newest {len(view.alerts)})" if len(view.alerts) < view.open_alerts else ""
        parts.append(
            f"<section><h2>Open alerts: {view.open_alerts:,}{shown}</h2>"
            + _table(
                [
                    ("ts", "When (UTC)"),
                    ("demonstration_id", "Demonstration"),
                    ("site_id", "Site"),
                    ("kpi_id", "KPI"),
                    ("transition", "Change"),
                    ("value", "Value"),
                    ("threshold", "Threshold"),
                ],
                view.alerts,
                "No open alerts.",
            )
            + "</section>"
        )
    return "\n".join(parts)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d232a; }
h1 { font-size: 1.4rem; margin: 0 0 .2rem; } h2 { font-size: 1.1rem; margin-top: 1.6rem; }
.totals { display: flex; gap: 2rem; flex-wrap: wrap; margin: 1rem 0; }
.maps { display: flex; gap: 1rem; flex-wrap: wrap; }
figure { margin: 0; border: 1px solid #d8dde3; border-radius: 6px; padding: .5rem; }
figcaption { font-weight: 600; } svg { width: 520px; height: 400px; }
svg text { font-size: 9px; fill: #1d232a; }
#history form { display: flex; gap: .6rem; flex-wrap: wrap; align-items: center; }
#chart { width: 900px; height: 260px; } #chart polyline { fill: none; stroke-width: 1.2; }
table { border-collapse: collapse; font-size: .85rem; }
th, td { border-bottom: 1px solid #e3e7eb; padding: .25rem .6rem; text-align: left; }
.muted, .empty { color: #6b7580; }
"""

SCRIPT = """
async function refresh() {
  try {
    const response = await fetch('/?part=main', {cache: 'no-store'});
    if (response.ok) document.getElementById('main').innerHTML = await response.text();
  } catch (e) { /* keep the last view; try again on the next tick */ }
}
setInterval(refresh, 15000);

// A site's metric over the last hours: the mean of each window, a line per demonstration.
const COLOURS = ['#1f6fb2', '#d64545', '#2e9e5b', '#e3a21a', '#7a4fb5'];
async function drawHistory(site, metric, hours) {
  const note = document.getElementById('chart-note');
  const chart = document.getElementById('chart');
  chart.innerHTML = '';
  if (!site || !metric) { note.textContent = 'Choose a site and a metric.'; return; }
  const to = new Date(), from = new Date(to - hours * 3600e3);
  const step = hours > 168 ? '1h' : '1m';
  const url = `/api/v1/sites/${encodeURIComponent(site)}/aggregates?` + new URLSearchParams(
    {metric, step, from: from.toISOString(), to: to.toISOString()});
  const response = await fetch(url, {cache: 'no-store'});
  const body = await response.json();
  if (!response.ok) {
    const detail = body.detail;
    note.textContent = Array.isArray(detail) ? detail.map((d) => d.msg).join('; ') : detail;
    return;
  }
  const lines = new Map();
  for (const row of body) {
    if (!lines.has(row.demonstration_id)) lines.set(row.demonstration_id, []);
    lines.get(row.demonstration_id).push([Date.parse(row.bucket), row.mean]);
  }
  const values = body.map((r) => r.mean);
  const low = Math.min(0, ...values), high = Math.max(1e-9, ...values);
  const [w, h, pad] = [900, 260, 36];
  const x = (t) => pad + (t - from) / (to - from) * (w - 2 * pad);
  const y = (v) => h - pad - (v - low) / (high - low) * (h - 2 * pad);
  let svg = `<text x="4" y="${pad}">${high.toPrecision(4)}</text>` +
    `<text x="4" y="${h - pad}">${low.toPrecision(4)}</text>` +
    `<text x="${pad}" y="${h - 8}">${from.toISOString().slice(0, 16)}Z</text>` +
    `<text x="${w - pad}" y="${h - 8}" text-anchor="end">${to.toISOString().slice(0, 16)}Z</text>`;
  let i = 0;
  for (const [demo, points] of lines) {
    const colour = COLOURS[i++ % COLOURS.length];
    const path = points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    svg += `<polyline class="series" data-demonstration="${demo}" data-points="${points.length}"` +
      ` stroke="${colour}" points="${path}"><title>${demo}</title></polyline>` +
      `<text x="${w - pad}" y="${14 + 12 * i}" text-anchor="end" fill="${colour}">${demo}</text>`;
  }
  chart.innerHTML = svg;
  note.textContent = `${metric} at ${site}: ${body.length} windows (${step}), mean per window.`;
}
const wanted = new URLSearchParams(location.search);
const form = document.getElementById('history-form');
for (const name of ['site', 'metric', 'hours']) {
  if (wanted.get(name)) form.elements[name].value = wanted.get(name);
}
form.addEventListener('submit', (event) => {
  event.preventDefault();
  const chosen = new URLSearchParams(new FormData(form));
  history.replaceState(null, '', '/?' + chosen);
  drawHistory(chosen.get('site'), chosen.get('metric'), Number(chosen.get('hours')));
});
if (wanted.get('site')) {
  drawHistory(wanted.get('site'), wanted.get('metric'), Number(wanted.get('hours') || 24));
}
"""


def render_page(main: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Testbed management view: Gwangju and South Jeolla</title>
<style>{STYLE}</style></head>
<body>
<h1>AI testbed: super-regional management view</h1>
<p class="muted">Gwangju's 3,375 demonstration sites and South Jeolla's, judged against each
demonstration's KPIs. API: <a href="/docs">/docs</a>, <a href="/openapi.json">/openapi.json</a>.</p>
<main id="main">{main}</main>
<section id="history">
  <h2>A site over time</h2>
  <form id="history-form">
    <label>Site <input name="site" size="16" placeholder="GJ-DONG-0001" required></label>
    <label>Metric <input name="metric" size="22" placeholder="online" required></label>
    <label>Range <select name="hours"><option value="6">6 hours</option>
      <option value="24" selected>24 hours</option><option value="168">7 days</option>
      <option value="720">30 days (hourly)</option></select></label>
    <button>Show</button>
  </form>
  <p id="chart-note" class="muted">Choose a site and a metric.</p>
  <svg id="chart" viewBox="0 0 900 260" role="img" aria-label="the metric over time"></svg>
</section>
<script>{SCRIPT}</script>
</body></html>"""


LOGIN_SCRIPT = """
async function signIn(token) {
  const response = await fetch('/api/v1/session', {
    method: 'POST', headers: {'content-type': 'application/json'},
    body: JSON.stringify({token: token.trim()})});
  if (response.ok) { location.replace('/' + location.search); return; }
  document.getElementById('problem').textContent = 'That token is not valid.';
}
// A link from `hub access add-token` carries the token after '#': never sent to a server.
if (location.hash.startsWith('#token=')) {
  const token = decodeURIComponent(location.hash.slice(7));
  history.replaceState(null, '', '/' + location.search);
  signIn(token);
}
document.getElementById('login').addEventListener('submit', (event) => {
  event.preventDefault();
  signIn(document.getElementById('token').value);
});
"""


def render_login() -> str:
    """The page for a visitor without a valid token: paste one, or follow a `#token=` link."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in: testbed management view</title>
<style>{STYLE}</style></head>
<body>
<h1>AI testbed: super-regional management view</h1>
<p>Sign in with an API token (issued by <code>hub access add-token ROLE NAME</code>).</p>
<form id="login"><input id="token" type="password" size="70" autocomplete="off"
  placeholder="hub_..." aria-label="API token"> <button>Sign in</button></form>
<p id="problem" class="muted"></p>
<script>{LOGIN_SCRIPT}</script>
</body></html>"""
