"""`hub stack up | down | status` on the real local stack."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory everyone may enter (pytest's own temporary directories are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="hub-reach-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_home_postgres_cannot_enter_fails_naming_the_fix(open_dir: Path) -> None:
    """A checkout in a directory only its owner may enter (a root user's home): PostgreSQL's own
    user could not create its cluster there. Refused before anything is installed or built, in
    one line naming the directory and the fix (the stack runs this check when it runs as root)."""
    from tooling.stack.errors import StackError
    from tooling.stack.timescaledb import check_reachable

    locked = open_dir / "owner-only"
    locked.mkdir(mode=0o700)
    with pytest.raises(StackError) as refused:
        check_reachable(locked / "checkout" / ".hub" / "timescaledb", "postgres")
    message = str(refused.value)
    assert "\n" not in message
    assert f"may not enter {locked} (drwx------)" in message
    assert "HUB_HOME" in message
    check_reachable(open_dir / "checkout" / ".hub" / "timescaledb", "postgres")  # 0755: fine


def test_blocking_directory_reads_owner_group_and_other_bits(open_dir: Path) -> None:
    from tooling.stack.timescaledb import blocking_directory

    outer = open_dir / "outer"
    inner = outer / "inner"
    inner.mkdir(parents=True)
    outer.chmod(0o750)
    stranger, group = 54_321, {54_321}
    assert blocking_directory(inner / "data", stranger, group) == outer
    assert blocking_directory(inner / "data", stranger, {outer.stat().st_gid}) is None
    assert blocking_directory(inner / "data", outer.stat().st_uid, set()) is None
    outer.chmod(0o751)
    assert blocking_directory(inner / "data", stranger, group) is None
