"""Alertmanager from Debian's package (``prometheus-alertmanager``): Prometheus' alerts go to it,
and it hands them to the hub's notifier.

It runs a copy of ``deploy/alertmanager/alertmanager.yml`` written by ``up``, with the
notifier's local address for the webhook. Its gossip port is switched off: a single local
Alertmanager has no peers, and the default port (9094) is the Kafka controller's.
"""

from __future__ import annotations

import shutil
from typing import Any

import yaml

from hub.settings import Settings
from hub.stack import prereqs
from hub.stack.errors import StackError
from hub.stack.part import PartStatus, Say
from hub.stack.process import owned_pid, port_in_use, spawn, terminate, wait_until
from hub.stack.prometheus import http_ok, prometheus_version

BINARY = "prometheus-alertmanager"


class Alertmanager:
    name = "alertmanager"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home / "alertmanager"
        self.data = self.dir / "data"
        self.pidfile = self.dir / "alertmanager.pid"
        self.log = self.dir / "alertmanager.log"
        self.template = settings.deploy_dir / "alertmanager" / "alertmanager.yml"
        self.config = self.dir / "alertmanager.yml"
        self.host, self.port = "127.0.0.1", settings.alertmanager_port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _pid(self) -> int | None:
        return owned_pid(self.pidfile, str(self.data))

    def status(self) -> PartStatus:
        pid = self._pid()
        binary = shutil.which(BINARY)
        version = f"Alertmanager {prometheus_version(binary)}" if binary else ""
        return PartStatus(self.name, "running" if pid else "stopped", pid, self.address, version)

    def wanted_config(self) -> str:
        """The shipped configuration, every webhook pointed at the local notifier."""
        config: dict[str, Any] = yaml.safe_load(self.template.read_text())
        url = f"http://127.0.0.1:{self.settings.notify_port}/alertmanager"
        for receiver in config.get("receivers", []):
            for webhook in receiver.get("webhook_configs", []):
                webhook["url"] = url
        return "# written by `hub stack up` from deploy/alertmanager/alertmanager.yml\n" + (
            yaml.safe_dump(config, sort_keys=False)
        )

    def up(self, say: Say) -> PartStatus:
        if self._pid() is not None:
            return self.status()
        if port_in_use(self.host, self.port):
            raise StackError(
                f"alertmanager: port {self.address} is taken by another process; stop it or set "
                "HUB_ALERTMANAGER_PORT"
            )
        prereqs.ensure([prereqs.ALERTMANAGER], say)
        self.data.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self.wanted_config())
        argv = [
            shutil.which(BINARY) or BINARY,
            f"--config.file={self.config}",
            f"--storage.path={self.data}",
            f"--web.listen-address={self.address}",
            "--cluster.listen-address=",
        ]
        pid = spawn(argv, self.log, self.pidfile)
        took = wait_until(
            lambda: http_ok(f"http://{self.address}/-/ready"),
            what=f"alertmanager (pid {pid})",
            timeout_s=self.settings.stack_start_timeout_s,
            alive=lambda: self._pid() is not None,
            log=self.log,
        )
        say(f"alertmanager: started in {took:.1f} s")
        return self.status()

    def outdated(self) -> bool:
        return not self.config.exists() or self.config.read_text() != self.wanted_config()

    def down(self, say: Say) -> PartStatus:
        pid = self._pid()
        if pid is not None:
            terminate(pid)
            say(f"alertmanager: stopped pid {pid}")
        self.pidfile.unlink(missing_ok=True)
        return self.status()
