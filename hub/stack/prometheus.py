"""Prometheus from Debian's package, scraping the hub's processes with ``deploy/prometheus``."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request

from hub.settings import Settings, host_port
from hub.stack import prereqs
from hub.stack.errors import StackError
from hub.stack.part import PartStatus, Say
from hub.stack.process import owned_pid, port_in_use, spawn, terminate, wait_until


def prometheus_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"version (\S+)", out.stdout + out.stderr)
    return match.group(1) if match else "?"


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local http only)
            return bool(response.status == 200)
    except OSError:
        return False


class Prometheus:
    name = "prometheus"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home / "prometheus"
        self.data = self.dir / "data"
        self.pidfile = self.dir / "prometheus.pid"
        self.log = self.dir / "prometheus.log"
        self.config = settings.deploy_dir / "prometheus" / "prometheus.yml"
        self.host, self.port = host_port(settings.prometheus_address, "prometheus address")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _pid(self) -> int | None:
        return owned_pid(self.pidfile, str(self.data))

    def status(self) -> PartStatus:
        pid = self._pid()
        binary = shutil.which("prometheus")
        version = f"Prometheus {prometheus_version(binary)}" if binary else ""
        return PartStatus(self.name, "running" if pid else "stopped", pid, self.address, version)

    def up(self, say: Say) -> PartStatus:
        if self._pid() is not None:
            return self.status()
        if port_in_use(self.host, self.port):
            raise StackError(
                f"prometheus: port {self.address} is taken by another process; stop it "
                "(a system Prometheus: `systemctl stop prometheus`)"
            )
        prereqs.ensure([prereqs.PROMETHEUS], say)
        self.data.mkdir(parents=True, exist_ok=True)
        argv = [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.data}",
            "--storage.tsdb.retention.time=7d",
            f"--web.listen-address={self.address}",
            "--web.enable-lifecycle",
        ]
        pid = spawn(argv, self.log, self.pidfile)
        took = wait_until(
            lambda: http_ok(f"http://{self.address}/-/ready"),
            what=f"prometheus (pid {pid})",
            timeout_s=self.settings.stack_start_timeout_s,
            alive=lambda: self._pid() is not None,
            log=self.log,
        )
        say(f"prometheus: started in {took:.1f} s")
        return self.status()

    def outdated(self) -> bool:
        return False  # nothing `up` writes for it changes under a running process

    def down(self, say: Say) -> PartStatus:
        pid = self._pid()
        if pid is not None:
            terminate(pid)
            say(f"prometheus: stopped pid {pid}")
        self.pidfile.unlink(missing_ok=True)
        return self.status()
