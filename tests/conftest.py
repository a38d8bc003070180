"""Shared fixtures: one local stack per test run, brought up (idempotently) by the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from hub.settings import Settings


def run_hub(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """The installed ``hub`` command, as a user runs it, bounded in time."""
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Settings:
    """The real Kafka, TimescaleDB and Prometheus, up for the whole session."""
    result = run_hub("stack", "up")
    assert result.returncode == 0, f"hub stack up failed:\n{result.stdout}\n{result.stderr}"
    return settings


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent
