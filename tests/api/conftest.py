"""A scratch database per module (registry loaded, rows seeded by tests) and a real `hub api`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.settings import Settings
from tests.support import scratch_database


@dataclass(frozen=True)
class Scratch:
    url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
async def scratch(stack: Settings) -> AsyncIterator[Scratch]:
    """A fresh database with the schema and the repository's registry, dropped afterwards."""
    async with scratch_database(stack) as url:
        yield Scratch(url, {"HUB_DATABASE_URL": url})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiServer:
    """A real `hub api` subprocess, stopped by its pid."""

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hub", "api", "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "HUB_UPKEEP_INTERVAL": "3600", **env},
            )

    def wait_serving(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"hub api exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.base}/openapi.json", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"hub api not serving:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def api(scratch: Scratch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = ApiServer(scratch.env, tmp_path_factory.mktemp("api") / "api.log")
    try:
        server.wait_serving()
        yield server
    finally:
        server.stop()
