"""Prometheus from Debian's package, scraping the hub's processes with ``deploy/prometheus``.

It runs a copy of ``deploy/prometheus/prometheus.yml`` written by ``up``: the rule files by their
full path, and alerts sent to the local Alertmanager's port (HUB_ALERTMANAGER_PORT)."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from typing import Any

import yaml

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
        self.template = settings.deploy_dir / "prometheus" / "prometheus.yml"
        self.config = self.dir / "prometheus.yml"
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
        self.config.write_text(self.wanted_config())
        argv = [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.data}",
            "--storage.tsdb.retention.time=7d",
            f"--web.listen-address={self.address}",
            "--web.enable-lifecycle",
            # Firing alerts are sent again this often (default 1 m): one dropped while the
            # Alertmanager was starting arrives within seconds, not a minute.
            "--rules.alert.resend-delay=10s",
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

    def wanted_config(self) -> str:
        config: dict[str, Any] = yaml.safe_load(self.template.read_text())
        base = self.template.parent
        config["rule_files"] = [str(base / pattern) for pattern in config.get("rule_files", [])]
        alertmanager = f"127.0.0.1:{self.settings.alertmanager_port}"
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
        header = "# written by `hub stack up` from deploy/prometheus/prometheus.yml\n"
        return header + yaml.safe_dump(config, sort_keys=False)

    def outdated(self) -> bool:
        """Running on another configuration than ``up`` writes now (an older checkout's)."""
        return not self.config.exists() or self.config.read_text() != self.wanted_config()

    def down(self, say: Say) -> PartStatus:
        pid = self._pid()
        if pid is not None:
            terminate(pid)
            say(f"prometheus: stopped pid {pid}")
        self.pidfile.unlink(missing_ok=True)
        return self.status()
