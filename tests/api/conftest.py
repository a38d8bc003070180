"""A scratch database per module (registry loaded, rows seeded by tests) and a real `hub api`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hub.settings import Settings
from tests.conftest import run_hub_async
from tests.support import scratch_database

# The API tokens every scratch database gets, by the role they are issued for.
ROLES = {
    "operator": "operator",
    "jeonnam": "partner:jeonnam",
    "company-a": "company:Company A",
    # ParkEye shares parking lots and markets with Firewatch: a company at shared sites.
    "parkeye": "company:ParkEye",
}


@dataclass(frozen=True)
class Scratch:
    url: str
    env: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)  # by the names of ROLES


async def issue_token(env: dict[str, str], role: str, name: str) -> str:
    """A token issued the way an administrator does: `hub access add-token`."""
    issued = await run_hub_async("access", "add-token", role, name, env=env)
    assert issued.returncode == 0, issued.stderr
    return issued.stdout.split("token", 1)[1].split()[0]


@pytest.fixture(scope="module")
async def scratch(stack: Settings) -> AsyncIterator[Scratch]:
    """A fresh database with the schema, the repository's registry and a token per role in
    ROLES, dropped afterwards."""
    async with scratch_database(stack) as url:
        env = {"HUB_DATABASE_URL": url}
        tokens = {name: await issue_token(env, role, name) for name, role in ROLES.items()}
        yield Scratch(url, env, tokens)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiServer:
    """A real `hub api` subprocess, stopped by its pid."""

    def __init__(
        self, env: dict[str, str], log: Path, port: int | None = None, token: str = ""
    ) -> None:
        self.token = token  # sent by default by the tests' requests
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


def get(api: ApiServer, path: str, token: str | None = None) -> tuple[int, Any]:
    """GET with the operator's token, or ``token`` ("" for none)."""
    token = api.token if token is None else token
    headers = {"authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(api.base + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post(api: ApiServer, path: str, body: bytes, token: str | None = None) -> tuple[int, Any]:
    token = api.token if token is None else token
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(api.base + path, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def api(scratch: Scratch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    log = tmp_path_factory.mktemp("api") / "api.log"
    server = ApiServer(scratch.env, log, token=scratch.tokens["operator"])
    try:
        server.wait_serving()
        yield server
    finally:
        server.stop()
