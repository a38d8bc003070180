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

from hub import principals
from hub.settings import Settings
from tests.api.conftest import ApiServer
from tests.conftest import WorkerProcess, run_hub
from tooling.localrun import drop_hub_topics, fresh_hub

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


def with_all(expr: str, variables: list[dict[str, Any]]) -> str:
    """A PromQL expression as Grafana runs it with every variable at "All" (its allValue)."""
    for variable in variables:
        expr = expr.replace(f"${variable['name']}", variable.get("allValue", ".*"))
    return expr


def prometheus_expressions() -> list[str]:
    operations = dashboard("testbed-operations.json")
    variables = operations["templating"]["list"]
    exprs = [with_all(t["expr"], variables) for p in operations["panels"] for t in p["targets"]]
    for path in sorted((ROOT / "deploy/prometheus/rules").glob("*.yml")):
        rules = yaml.safe_load(path.read_text())
        exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return exprs


def label_values(definition: str) -> list[str]:
    """What Grafana's ``label_values(selector, label)`` asks Prometheus' series API."""
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", definition)
    assert match, definition
    selector, label = match.groups()
    query = urllib.parse.urlencode({"match[]": selector})
    with urllib.request.urlopen(f"{PROMETHEUS}/api/v1/label/{label}/values?{query}") as answer:
        return list(json.loads(answer.read())["data"])


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


async def push_event_time(settings: Settings, ahead_ms: int) -> None:
    """One signed ``online`` record per partition, from a registered device, ``ahead_ms`` ahead."""
    from aiokafka import AIOKafkaProducer

    from hub import topics
    from hub.registry.files import read_registry
    from tests.support import partition_of, record, signed

    registry = read_registry()
    reporting = {d.demonstration_id for d in registry.demonstrations if "online" in d.metrics}
    first: dict[int, tuple[str, str]] = {}
    for device in registry.devices:
        if device.demonstration_id in reporting:
            partition = partition_of(device.site_id, settings.partitions)
            first.setdefault(partition, (device.site_id, device.device_id))
    producer = AIOKafkaProducer(**principals.client(settings), acks="all")
    await producer.start()
    try:
        ts = int(time.time() * 1000) + ahead_ms
        for site, device_id in first.values():
            value = record(site, ts, {"online": 1.0}, device=device_id)
            await producer.send_and_wait(
                topics.TELEMETRY, value=value, key=site.encode(), headers=signed(value)
            )
    finally:
        await producer.stop()


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
            "6",
            "--bad-fraction",
            "0.05",
            timeout=300,
        )
        assert load.returncode == 0, load.stderr
        # Close the simulated minute now: a record on every partition dated 70 s ahead (the tests'
        # clock tolerance is 300 s) moves event time past its end plus the 5 s lateness.
        asyncio.run(push_event_time(settings, 70_000))
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
        ["check", "rules", "rules/hub.yml", "rules/federation.yml"],
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


def test_the_operations_variables_list_regions_and_districts(observed: Settings) -> None:
    variables = {v["name"]: v for v in dashboard("testbed-operations.json")["templating"]["list"]}
    assert set(label_values(variables["region"]["definition"])) == {"gwangju", "jeonnam"}
    districts = with_all(variables["district"]["definition"], [variables["region"]])
    assert len(label_values(districts)) >= 5


def quoted(values: list[str]) -> str:
    """A multi-value SQL variable as Grafana interpolates it."""
    return ",".join("'" + v.replace("'", "''") + "'" for v in values)


async def test_every_sql_query_of_the_management_dashboard_runs_read_only(
    observed: Settings,
) -> None:
    """As hub_readonly (Grafana's role), every variable at "All", as Grafana expands it: each
    variable's own query first, feeding the ones after it."""
    board = dashboard("super-regional-management.json")
    conn = await asyncpg.connect(observed.database_url)
    try:
        await conn.execute("SET ROLE hub_readonly")
        chosen: dict[str, list[str]] = {}
        for variable in board["templating"]["list"]:
            query = variable["query"]
            for name, values in chosen.items():
                query = query.replace(f"${name}", quoted(values))
            chosen[variable["name"]] = [r[0] for r in await conn.fetch(query)]
        assert chosen["region"] == ["gwangju", "jeonnam"]
        assert len(chosen["district"]) == 5 + 22
        assert "DEMO-001" in chosen["demonstration"]
        with_rows = 0
        queries = []
        for panel in board["panels"]:
            for target in panel["targets"]:
                query = target["rawSql"]
                for name, values in chosen.items():
                    query = query.replace(f"${name}", quoted(values))
                queries.append(expand_grafana_macros(query))
        for query in queries:
            with_rows += bool(await conn.fetch(query))
        sites = await conn.fetch(queries[-1])
        assert len(sites) == 3705  # the map: every registered site, by lat/lon
        assert all(-90 <= r["latitude"] <= 90 and -180 <= r["longitude"] <= 180 for r in sites)
        # Grafana's role reads the management tables only: no tokens, keys or receivers.
        for secret in ("api_tokens", "device_keys", "notify_receivers"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(f"SELECT * FROM {secret} LIMIT 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM kpi_alerts")
    finally:
        await conn.close()
    assert with_rows >= len(queries) - 2


# What a panel title's "per X" / "by X" promises its query groups by: the label or column.
DIMENSIONS = {
    "region": "region",
    "district": "district",
    "partition": "partition",
    "demonstration": "demonstration_id",
    "reason": "reason",
    "status": "status",
    "change": "transition",
    "worker": "instance",
}


def groups_of(target: dict[str, Any]) -> set[str]:
    """The labels a PromQL expression aggregates by, or the columns a SQL query selects before
    its first FROM (its series names and table columns)."""
    if "expr" in target:
        return {
            label.strip()
            for labels in re.findall(r"\bby \(([^)]*)\)", target["expr"])
            for label in labels.split(",")
        }
    selected = target["rawSql"].split(" FROM ", 1)[0]
    return set(re.findall(r"[a-z_]+", selected))


@pytest.mark.parametrize("name", ["testbed-operations.json", "super-regional-management.json"])
def test_every_panel_title_names_what_its_query_groups_by(name: str) -> None:
    """ "Open alerts per demonstration" summed by region once: what a title's "per X" or "by X"
    names, one of the panel's queries must group by."""
    checked = 0
    for panel in dashboard(name)["panels"]:
        promised = [
            DIMENSIONS[word]
            for word in re.findall(r"\b(?:per|by) (\w+)", panel["title"])
            if word in DIMENSIONS
        ]
        grouped = set().union(*(groups_of(t) for t in panel["targets"]))
        for column in promised:
            assert column in grouped, (panel["title"], column, panel["targets"])
            checked += 1
    assert checked >= 4
