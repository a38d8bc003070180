"""Shared fixtures: one local stack per test run, brought up (idempotently) by the real CLI."""

from __future__ import annotations

import asyncio
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


async def run_hub_async(
    *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    """``run_hub`` for async tests: the event loop (and the clients on it) keeps running."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return subprocess.CompletedProcess(list(args), proc.returncode, out.decode(), err.decode())


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


@pytest.fixture(scope="session")
def loaded_registry(stack: Settings) -> Settings:
    """The repository's registry, loaded into the stack's database."""
    result = run_hub("registry", "load")
    assert result.returncode == 0, f"hub registry load failed:\n{result.stderr}"
    return stack
