"""`hub stack up | down | status` on the real local stack."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from hub.settings import Settings
from tests.conftest import run_hub


def status_by_part(env: dict[str, str] | None = None) -> tuple[int, dict[str, dict[str, object]]]:
    result = run_hub("stack", "status", "--json", env=env)
    return result.returncode, {row["name"]: row for row in json.loads(result.stdout)}


def test_second_up_is_a_no_op(stack: Settings) -> None:
    _, before = status_by_part()
    result = run_hub("stack", "up")
    _, after = status_by_part()

    assert result.returncode == 0, result.stderr
    for part in ("timescaledb", "kafka", "alertmanager", "prometheus"):
        assert f"{part}: already running (pid {before[part]['pid']})" in result.stdout
        assert after[part]["pid"] == before[part]["pid"]
        assert after[part]["state"] == "running"


def test_status_reports_a_stopped_part_as_stopped(stack: Settings) -> None:
    down = run_hub("stack", "down", "prometheus")
    assert down.returncode == 0, down.stderr
    try:
        code, parts = status_by_part()
        assert code == 3
        assert parts["prometheus"]["state"] == "stopped"
        assert parts["prometheus"]["pid"] is None
        assert parts["kafka"]["state"] == "running"
        assert parts["timescaledb"]["state"] == "running"
    finally:
        up = run_hub("stack", "up", "prometheus")
    assert up.returncode == 0, up.stderr
    code, parts = status_by_part()
    assert code == 0
    assert parts["prometheus"]["state"] == "running"


def test_taken_port_fails_with_one_line_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = {"HUB_HOME": str(tmp_path), "HUB_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}
        result = run_hub("stack", "up", "kafka", env=env)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"port 127.0.0.1:{port} is taken" in lines[0]
    assert "HUB_KAFKA_BOOTSTRAP" in lines[0]
    _, parts = status_by_part(env)
    assert parts["kafka"]["state"] == "stopped"
    assert not (tmp_path / "kafka" / "kafka.pid").exists()


def test_bad_setting_names_its_variable() -> None:
    result = run_hub("stack", "status", env={"HUB_API_PORT": "eighty"})
    assert result.returncode == 1
    assert "HUB_API_PORT='eighty': not an integer" in result.stderr


def test_unknown_part_is_refused() -> None:
    result = run_hub("stack", "up", "zookeeper")
    assert result.returncode == 1
    assert "unknown part zookeeper" in result.stderr
