"""Operators' view, proven: the real Prometheus scrapes a running worker and API under simulated
load; every PromQL expression of the dashboards and alert rules runs through Prometheus' HTTP API,
every SQL query of the management dashboard runs on the real TimescaleDB."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from hub.localrun import drop_hub_topics, fresh_hub
from hub.settings import Settings
from tests.api.conftest import ApiServer
from tests.conftest import WorkerProcess, run_hub

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = "http://127.0.0.1:9090"


def promql(expr: str) -> dict[str, Any]:
    url = f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as error:
        return dict(json.loads(error.read()))


def dashboard(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "deploy/grafana/dashboards" / name).read_text()))


def prometheus_expressions() -> list[str]:
    exprs = [
        t["expr"] for p in dashboard("testbed-operations.json")["panels"] for t in p["targets"]
    ]
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/hub.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return exprs


def expand_grafana_macros(sql: str, hours: int = 6) -> str:
    """What Grafana's PostgreSQL datasource does with its macros, for a window of ``hours``."""
    sql = re.sub(
        r"\$__timeFilter\(([\w.]+)\)",
        rf"\1 BETWEEN now() - interval '{hours} hours' AND now()",
        sql,
    )
    units = {"m": "minutes", "h": "hours", "s": "seconds", "d": "days"}
    return re.sub(
        r"\$__timeGroupAlias\(([\w.]+),\s*(\d+)([smhd])\)",
        lambda m: f"time_bucket('{m.group(2)} {units[m.group(3)]}', {m.group(1)}) AS time",
        sql,
    )


@pytest.fixture(scope="module")
def observed(
    loaded_registry: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """A worker on the port Prometheus scrapes (6066) and the API on 8000, under load."""
    settings = loaded_registry
    app_id = f"obs-{uuid.uuid4().hex[:8]}"
    asyncio.run(fresh_hub(settings, app_id))
    logs = tmp_path_factory.mktemp("observed")
    worker = WorkerProcess(0, logs, {"HUB_APP_ID": app_id, "HUB_WORKER_WEB_PORT": "6066"})
    api = ApiServer({}, logs / "api.log", port=8000)
    try:
        worker.start().wait_ready()
        api.wait_serving()
        load = run_hub(
            "simulate",
            "--sites",
            "300",
            "--rate",
            "2",
            "--duration",
            "40",
            "--bad-fraction",
            "0.05",
            timeout=300,
        )
        assert load.returncode == 0, load.stderr
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:  # a window closed, and Prometheus scraped it
            result = promql("sum(hub_windows_closed_total)")
            values = result.get("data", {}).get("result", [])
            if values and float(values[0]["value"][1]) > 0:
                break
            time.sleep(1)
        else:
            raise AssertionError("Prometheus never saw a closed window")
        yield settings
    finally:
        worker.stop()
        api.stop()
        asyncio.run(drop_hub_topics(settings, app_id))


def test_promtool_accepts_the_config_and_the_rules_pass_their_unit_tests() -> None:
    prometheus = ROOT / "deploy/prometheus"
    for argv in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "rules/hub.yml"],
        ["test", "rules", "tests/hub_test.yml"],
    ):
        result = subprocess.run(
            ["promtool", *argv],
            cwd=prometheus,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_worker_and_the_api(observed: Settings) -> None:
    up = {
        r["metric"]["job"]: r["value"][1]
        for r in promql('up{job=~"hub-worker|hub-api", instance=~".*:(6066|8000)"}')["data"][
            "result"
        ]
    }
    assert up == {"hub-worker": "1", "hub-api": "1"}
    rules = json.loads(urllib.request.urlopen(f"{PROMETHEUS}/api/v1/rules", timeout=10).read())
    names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    assert {"HubSinkBacklog", "HubDlqRateHigh", "HubConsumerLagGrowing"} <= names


def test_every_dashboard_and_rule_expression_runs_and_most_return_data(
    observed: Settings,
) -> None:
    exprs = prometheus_expressions()
    empty = []
    for expr in exprs:
        result = promql(expr)
        assert result["status"] == "success", (expr, result.get("error"))
        if not result["data"]["result"]:
            empty.append(expr)
    # Alert rules are conditions: most are quiet on a healthy stack; the panels must have data.
    panels = [
        t["expr"] for p in dashboard("testbed-operations.json")["panels"] for t in p["targets"]
    ]
    quiet_panels = [e for e in empty if e in panels]
    assert len(quiet_panels) <= len(panels) // 5, quiet_panels


async def test_every_sql_query_of_the_management_dashboard_runs(observed: Settings) -> None:
    queries = [
        t["rawSql"]
        for p in dashboard("super-regional-management.json")["panels"]
        for t in p["targets"]
    ]
    conn = await asyncpg.connect(observed.database_url)
    try:
        with_rows = 0
        for query in queries:
            rows = await conn.fetch(expand_grafana_macros(query))
            with_rows += bool(rows)
    finally:
        await conn.close()
    assert with_rows >= len(queries) - 2
