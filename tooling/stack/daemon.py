"""What Prometheus and Alertmanager share in the local stack: a daemon from a Debian package, run
from ``$HUB_HOME/<name>`` on a copy of its ``deploy/`` configuration written there by ``up`` (with
the ports of the settings), stopped by its pidfile, and restarted by ``hub stack up`` when the copy
it would write now differs from the one it runs on (an upgraded checkout)."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from hub.settings import Settings
from tooling.stack import prereqs
from tooling.stack.errors import StackError
from tooling.stack.part import PartStatus, Say
from tooling.stack.process import is_alive, owned_pid, port_in_use, spawn, terminate, wait_until


def binary_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"version (\S+)", out.stdout + out.stderr)
    return match.group(1) if match else "?"


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local http only)
            return bool(response.status == 200)
    except OSError:
        return False


class ConfiguredDaemon:
    name: str
    label: str  # the product's name in `hub stack status`
    binary: str
    tool: prereqs.Tool
    taken_hint: str  # how to free its port

    def __init__(self, settings: Settings, host: str, port: int, template: Path) -> None:
        self.settings = settings
        self.host, self.port = host, port
        self.template = template
        self.dir = settings.home / self.name
        self.data = self.dir / "data"
        self.pidfile = self.dir / f"{self.name}.pid"
        self.log = self.dir / f"{self.name}.log"
        self.config = self.dir / template.name

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def argv(self, binary: str) -> list[str]:
        """The command line, on ``self.config`` and ``self.data``."""
        raise NotImplementedError

    def render(self, config: dict[str, Any]) -> dict[str, Any]:
        """The shipped configuration as this stack runs it."""
        raise NotImplementedError

    def wanted_config(self) -> str:
        config = self.render(yaml.safe_load(self.template.read_text()))
        shipped = self.template.relative_to(self.settings.project_root)
        header = f"# written by `hub stack up` from {shipped}\n"
        return header + yaml.safe_dump(config, sort_keys=False)

    def _pid(self) -> int | None:
        return owned_pid(self.pidfile, str(self.data))

    def status(self) -> PartStatus:
        pid = self._pid()
        binary = shutil.which(self.binary)
        version = f"{self.label} {binary_version(binary)}" if binary else ""
        return PartStatus(self.name, "running" if pid else "stopped", pid, self.address, version)

    def up(self, say: Say) -> PartStatus:
        if self._pid() is not None:
            return self.status()
        if port_in_use(self.host, self.port):
            raise StackError(
                f"{self.name}: port {self.address} is taken by another process; {self.taken_hint}"
            )
        prereqs.ensure([self.tool], say)
        self.data.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self.wanted_config())
        argv = self.argv(shutil.which(self.binary) or self.binary)
        self.config.with_suffix(".argv").write_text("\n".join(argv[1:]))
        pid = spawn(argv, self.log, self.pidfile)
        took = wait_until(
            lambda: http_ok(f"http://{self.address}/-/ready"),
            what=f"{self.name} (pid {pid})",
            timeout_s=self.settings.stack_start_timeout_s,
            alive=lambda: is_alive(pid),  # the process spawned, not the pidfile's reading
            log=self.log,
        )
        say(f"{self.name}: started in {took:.1f} s")
        return self.status()

    def outdated(self) -> bool:
        """Running on another configuration or other flags than ``up`` gives now (an older
        checkout's)."""
        argv = self.config.with_suffix(".argv")
        return (
            not self.config.exists()
            or self.config.read_text() != self.wanted_config()
            or not argv.exists()
            or argv.read_text() != "\n".join(self.argv(self.binary)[1:])
        )

    def down(self, say: Say) -> PartStatus:
        pid = self._pid()
        if pid is not None:
            terminate(pid)
            say(f"{self.name}: stopped pid {pid}")
        self.pidfile.unlink(missing_ok=True)
        return self.status()
