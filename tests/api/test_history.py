"""History and export on the real API and TimescaleDB: a week of one site minute by minute, hours
from minutes and from the roll-up before them, the same rows as CSV, scoped by token, and ranges
beyond the bounds answered 422 naming the parameter."""

from __future__ import annotations

import asyncio
import csv
import http.client
import io
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from hub.registry.files import read_registry
from tests.api.conftest import ApiServer, Scratch, get
from tests.api.test_api import chromium
from tooling.stack import prereqs

REGISTRY = read_registry()
# A site where ParkEye's DEMO-005 and Firewatch's DEMO-008 both have devices (in Gwangju).
SHARED = sorted(
    {d.site_id for d in REGISTRY.devices if d.demonstration_id == "DEMO-005"}
    & {d.site_id for d in REGISTRY.devices if d.demonstration_id == "DEMO-008"}
)[0]
NEIGHBOURS_VALUE = 999.0
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
WEEK_START = NOW - timedelta(days=7)
FIRST_HOUR = WEEK_START.replace(minute=0)  # the hour of the first minute row
ROLLED_UP_FROM = FIRST_HOUR - timedelta(days=3)  # hours only in the roll-up, before the minutes
MINUTES = 7 * 24 * 60


def minute_sum(i: int) -> float:
    return float(i % 60 + 1)


@pytest.fixture(scope="module")
async def history(scratch: Scratch) -> Scratch:
    """DEMO-005's `online` every minute for a week at the shared site, its hours for the three
    days before that in the roll-up only, the neighbour's last two hours, and 50 judged KPI
    windows of DEMO-005."""
    rows = [
        (
            WEEK_START + timedelta(minutes=i),
            SHARED,
            "DEMO-005",
            "online",
            60,
            minute_sum(i),
            0.0,
            1.0,
        )
        for i in range(MINUTES)
    ]
    rows += [
        (NOW - timedelta(minutes=i), SHARED, "DEMO-008", "online", 60, NEIGHBOURS_VALUE, 0.0, 1.0)
        for i in range(1, 121)
    ]
    hours = [
        (
            ROLLED_UP_FROM + timedelta(hours=h),
            SHARED,
            "DEMO-005",
            "online",
            3600,
            1800.0 + h,
            0.0,
            1.0,
        )
        for h in range(72)
    ]
    judged = [
        (
            NOW - timedelta(minutes=15 * (k + 1)),
            NOW - timedelta(minutes=15 * k),
            "DEMO-005",
            SHARED,
            "availability",
            1.0,
            0.98,
            "pass",
            15,
        )
        for k in range(50)
    ]
    columns = ["bucket", "site_id", "demonstration_id", "metric", "count", "sum", "min", "max"]
    conn = await asyncpg.connect(scratch.url)
    try:
        await conn.copy_records_to_table("site_aggregates", records=rows, columns=columns)
        await conn.copy_records_to_table("site_aggregates_hourly", records=hours, columns=columns)
        await conn.copy_records_to_table(
            "kpi_results",
            records=judged,
            columns=[
                "window_start",
                "window_end",
                "demonstration_id",
                "site_id",
                "kpi_id",
                "value",
                "threshold",
                "status",
                "samples",
            ],
        )
    finally:
        await conn.close()
    return scratch


def query(**params: object) -> str:
    return urllib.parse.urlencode(
        {k.rstrip("_"): v.isoformat() if isinstance(v, datetime) else v for k, v in params.items()}
    )


def aggregates(api: ApiServer, *, token: str | None = None, **params: object) -> tuple[int, object]:
    return get(api, f"/api/v1/sites/{SHARED}/aggregates?{query(**params)}", token)


def test_a_week_of_one_site_minute_by_minute(history: Scratch, api: ApiServer) -> None:
    started = time.monotonic()
    status, rows = aggregates(api, metric="online", from_=WEEK_START, to=NOW)
    took = time.monotonic() - started
    assert status == 200, rows
    assert isinstance(rows, list)
    mine = [r for r in rows if r["demonstration_id"] == "DEMO-005"]
    assert len(mine) == MINUTES
    assert [r["sum"] for r in mine] == [minute_sum(i) for i in range(MINUTES)]
    assert datetime.fromisoformat(mine[0]["bucket"]) == WEEK_START
    assert all(r["count"] == 60 and r["mean"] == r["sum"] / 60 for r in mine)
    assert sum(r["demonstration_id"] == "DEMO-008" for r in rows) == 120
    print(f"a week of one site's minutes: {len(rows)} rows in {took:.3f} s (operator, JSON)")


def test_hours_come_from_the_minutes_and_from_the_rollup_before_them(
    history: Scratch, api: ApiServer
) -> None:
    status, rows = aggregates(
        api, metric="online", from_=ROLLED_UP_FROM, to=WEEK_START + timedelta(days=7), step="1h"
    )
    assert status == 200, rows
    assert isinstance(rows, list)
    mine = [r for r in rows if r["demonstration_id"] == "DEMO-005"]
    rolled = [r for r in mine if datetime.fromisoformat(r["bucket"]) < FIRST_HOUR]
    assert [(r["count"], r["sum"]) for r in rolled] == [(3600, 1800.0 + h) for h in range(72)]
    summed = [r for r in mine if datetime.fromisoformat(r["bucket"]) >= FIRST_HOUR]
    # The week starts at a minute, not an hour: the first and last hours are partial.
    assert sum(r["count"] for r in summed) == 60 * MINUTES
    assert sum(r["sum"] for r in summed) == sum(minute_sum(i) for i in range(MINUTES))
    assert all(r["p50"] is None for r in mine)


def export(api: ApiServer, *, token: str | None = None, **params: object) -> tuple[int, str, str]:
    token = api.token if token is None else token
    request = urllib.request.Request(
        f"{api.base}/api/v1/export/site-aggregates?{query(**params)}",
        headers={"authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["content-type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["content-type"], error.read().decode()


def test_the_export_streams_the_same_rows_as_csv(history: Scratch, api: ApiServer) -> None:
    span: dict[str, Any] = {"metric": "online", "from_": WEEK_START, "to": NOW}
    status, kind, text = export(api, site_id=SHARED, format="csv", **span)
    assert (status, kind.split(";")[0]) == (200, "text/csv")
    lines = list(csv.DictReader(io.StringIO(text)))
    assert "count" in lines[0]
    status, rows = aggregates(api, **span)
    assert status == 200
    assert isinstance(rows, list)
    assert [
        (
            r["demonstration_id"],
            datetime.fromisoformat(r["bucket"]),
            int(r["count"]),
            float(r["sum"]),
        )
        for r in lines
    ] == [
        (r["demonstration_id"], datetime.fromisoformat(r["bucket"]), r["count"], r["sum"])
        for r in rows
    ]
    assert {r["site_id"] for r in lines} == {SHARED}


def test_a_company_sees_only_its_own_demonstrations_history(
    history: Scratch, api: ApiServer
) -> None:
    token = history.tokens["parkeye"]
    span: dict[str, Any] = {"metric": "online", "from_": NOW - timedelta(hours=3), "to": NOW}
    status, rows = aggregates(api, token=token, **span)
    assert status == 200
    assert isinstance(rows, list)
    assert {r["demonstration_id"] for r in rows} == {"DEMO-005"}
    status, _, text = export(api, token=token, site_id=SHARED, **span)
    assert status == 200
    assert "DEMO-008" not in text
    assert str(NEIGHBOURS_VALUE) not in text
    assert len(text.splitlines()) == 1 + 180
    status, judged = get(api, "/api/v1/demonstrations/DEMO-008/kpi-results", token)
    assert status == 404, judged
    # Not its site at all: the same answer as for no site.
    assert aggregates(api, token=history.tokens["company-a"], **span)[0] == 404
    assert aggregates(api, token=history.tokens["jeonnam"], **span)[0] == 404
    assert export(api, token=history.tokens["jeonnam"], site_id=SHARED)[0] == 404


def test_a_demonstrations_judged_windows_over_a_range(history: Scratch, api: ApiServer) -> None:
    path = "/api/v1/demonstrations/DEMO-005/kpi-results"
    status, rows = get(api, f"{path}?{query(from_=NOW - timedelta(hours=24), to=NOW)}")
    assert status == 200, rows
    assert len(rows) == 50
    starts = [datetime.fromisoformat(r["window_start"]) for r in rows]
    assert starts == sorted(starts)
    assert starts[-1] == NOW - timedelta(minutes=15)
    status, rows = get(api, f"{path}?{query(from_=NOW - timedelta(hours=2), to=NOW)}")
    assert (status, len(rows)) == (200, 8)
    status, body = get(api, f"{path}?{query(limit=10)}")
    assert status == 422
    assert body["detail"][0]["loc"] == ["query", "limit"]
    assert "more than 10" in body["detail"][0]["msg"]
    assert get(api, f"{path}?{query(site_id=SHARED, kpi_id='availability')}")[0] == 200
    assert get(api, path, history.tokens["parkeye"])[0] == 200
    assert get(api, path, history.tokens["jeonnam"])[0] == 404  # DEMO-005: Gwangju only


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"from_": NOW - timedelta(days=8), "to": NOW}, "from", "at most 7 days"),
        ({"from_": NOW, "to": NOW - timedelta(hours=1)}, "from", "before 'to'"),
        ({"from_": "2026-11-30T09:00:00"}, "from", "time zone"),
        ({"metric": "nope"}, "metric", "plates_read"),
        ({"step": "5m"}, "step", ""),
        ({"from_": "yesterday"}, "from", ""),
        ({"to": "0001-01-01T00:00:00Z"}, "to", "first day"),  # a day before it overflows
        ({"form": "2026-11-30T00:00:00Z"}, "form", "unknown query parameter"),
    ],
)
def test_ranges_and_parameters_beyond_the_bounds_answer_422(
    history: Scratch, api: ApiServer, params: dict[str, Any], field: str, says: str
) -> None:
    status, body = aggregates(api, **params)
    assert status == 422, body
    assert isinstance(body, dict)
    assert [d["loc"][-1] for d in body["detail"]] == [field]
    assert says in body["detail"][0]["msg"]


def test_judged_windows_are_answered_at_most_ten_thousand_at_a_time(
    history: Scratch, api: ApiServer
) -> None:
    """One JSON answer is built in memory: a larger limit answers 422 naming it (narrow the
    range, or export), never a list of 100,000."""
    status, body = get(api, f"/api/v1/demonstrations/DEMO-005/kpi-results?{query(limit=100_000)}")
    assert status == 422, body
    assert [d["loc"][-1] for d in body["detail"]] == ["limit"]
    assert get(api, f"/api/v1/demonstrations/DEMO-005/kpi-results?{query(limit=10_000)}")[0] == 200


def test_exports_and_histories_of_unknown_things(history: Scratch, api: ApiServer) -> None:
    assert get(api, "/api/v1/sites/GJ-NOPE-0000/aggregates")[0] == 404
    assert get(api, "/api/v1/demonstrations/DEMO-999/kpi-results")[0] == 404
    assert export(api, site_id="GJ-NOPE-0000")[0] == 404
    status, _, body = export(api, site_id=SHARED, format="xlsx")
    assert status == 422
    assert "format" in body
    status, _, body = export(api)
    assert status == 422
    assert "site_id" in body
    # A month of minutes may be exported (not viewed); more may not.
    long: dict[str, Any] = {"from_": NOW - timedelta(days=31), "to": NOW}
    assert export(api, site_id=SHARED, **long)[0] == 200
    status, _, body = export(api, site_id=SHARED, from_=NOW - timedelta(days=32), to=NOW)
    assert status == 422
    assert "31 days" in body


def test_the_page_draws_a_sites_metric_over_time(
    history: Scratch, api: ApiServer, tmp_path: Path
) -> None:
    """The link a user shares (`/?site=&metric=&hours=`), opened in headless Chromium after the
    token link: a line per demonstration, one point per minute window of the range."""
    prereqs.ensure([prereqs.CHROMIUM], print)
    before = datetime.now(UTC)
    rendered = chromium(
        "--virtual-time-budget=8000",
        "--dump-dom",
        f"{api.base}/?site={SHARED}&metric=online&hours=6#token={api.token}",
        profile=tmp_path / "profile",
    )
    after = datetime.now(UTC)
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    dom = rendered.stdout.decode()
    series = dict(re.findall(r'data-demonstration="([^"]+)" data-points="(\d+)"', dom))
    # Six hours back from when the page drew: DEMO-005's minutes, the last of them a minute before
    # NOW (the seeding's), so fewer the later the page drew; the neighbour's two hours.
    section = dom.find('<section id="history">')
    shown = dom[section : dom.find("<script>", section)]
    assert series.keys() == {"DEMO-005", "DEMO-008"}, shown
    fewest = 360 - math.ceil((after - NOW).total_seconds() / 60) - 1
    most = 360 - math.floor((before - NOW).total_seconds() / 60)
    assert fewest <= int(series["DEMO-005"]) <= most, (fewest, series, most)
    assert series["DEMO-008"] == "120"
    assert f"online at {SHARED}" in dom


def test_slow_exports_never_take_the_connections_other_callers_need(
    scratch: Scratch, api: ApiServer
) -> None:
    """Exports whose readers stall (a spreadsheet tool on a slow line) hold connections of the
    export pool only: one more export is answered 429 with Retry-After, every other call is
    served, and once the stalled ones go, exports are taken again."""
    site = next(d.site_id for d in REGISTRY.devices if d.demonstration_id == "DEMO-001")
    start = NOW - timedelta(days=31)
    asyncio.run(month_of_minutes(scratch.url, site, start))
    query = urllib.parse.urlencode(
        {"site_id": site, "from": start.isoformat(), "to": NOW.isoformat(), "format": "csv"}
    )
    path = f"/api/v1/export/site-aggregates?{query}"
    stalled = []
    try:
        for _ in range(2):  # headers read, then nothing: the server blocks writing the body
            stream = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
            stream.request("GET", path, headers={"authorization": f"Bearer {api.token}"})
            response = stream.getresponse()
            assert response.status == 200
            response.read(1024)
            stalled.append(stream)

        def refused() -> bool | None:
            status, _ = get(api, path)
            return True if status == 429 else None

        deadline = time.monotonic() + 30
        while refused() is None:  # the stalled two take their connections as they start
            assert time.monotonic() < deadline, "a third export was not refused"
            time.sleep(0.2)
        request = urllib.request.Request(
            api.base + path, headers={"authorization": f"Bearer {api.token}"}
        )
        with pytest.raises(urllib.error.HTTPError) as refusal:
            urllib.request.urlopen(request, timeout=10)
        assert refusal.value.code == 429
        assert refusal.value.headers["Retry-After"] == "60"
        for _ in range(10):  # more than the main pool's 8 connections
            status, _ = get(api, "/api/v1/overview")
            assert status == 200
    finally:
        for stream in stalled:
            stream.close()

    # Once the stalled ones went, both of the export pool's connections serve again at once.
    def hour() -> tuple[int, str, str]:
        since = NOW - timedelta(hours=1)
        return export(api, site_id=site, metric="online", from_=since, to=NOW, format="csv")

    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(max_workers=2) as pool:
        while True:
            both = list(pool.map(lambda _: hour(), range(2)))
            if all(status == 200 for status, _, _ in both):
                break
            assert time.monotonic() < deadline, f"exports still refused: {[b[0] for b in both]}"
            time.sleep(0.5)
    assert [len(text.splitlines()) for _, _, text in both] == [61, 61]


async def month_of_minutes(url: str, site: str, start: datetime) -> None:
    """31 days of minutes of three metrics at ``site``: more CSV than a socket buffers."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO site_aggregates (bucket, site_id, demonstration_id, metric, count, sum,"
            " min, max) SELECT t, $1, 'DEMO-001', m, 60, 60, 1, 1"
            " FROM generate_series($2::timestamptz, $3::timestamptz - interval '1 minute',"
            " interval '1 minute') t,"
            " unnest(array['online', 'inference_latency_ms', 'hazards_detected']) m"
            " ON CONFLICT DO NOTHING",
            site,
            start,
            NOW,
        )
    finally:
        await conn.close()
