"""Prometheus from Debian's package, scraping the hub's processes with ``deploy/prometheus``.

It runs a copy of ``deploy/prometheus/prometheus.yml`` written by ``up``: the rule files by their
full path, and alerts sent to the local Alertmanager's port (HUB_ALERTMANAGER_PORT)."""

from __future__ import annotations

from typing import Any

from hub.settings import Settings, host_port
from tooling.stack import prereqs
from tooling.stack.daemon import ConfiguredDaemon


class Prometheus(ConfiguredDaemon):
    name = "prometheus"
    label = "Prometheus"
    binary = "prometheus"
    tool = prereqs.PROMETHEUS
    taken_hint = "stop it (a system Prometheus: `systemctl stop prometheus`)"

    def __init__(self, settings: Settings) -> None:
        host, port = host_port(settings.prometheus_address, "prometheus address")
        super().__init__(
            settings, host, port, settings.deploy_dir / "prometheus" / "prometheus.yml"
        )

    def argv(self, binary: str) -> list[str]:
        return [
            binary,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.data}",
            "--storage.tsdb.retention.time=7d",
            f"--web.listen-address={self.address}",
            # No --web.enable-lifecycle: its POST /-/quit stops Prometheus for anyone who can
            # reach it (a webhook redirected there, say); configuration changes restart it.
            # Firing alerts are sent again this often (default 1 m): one dropped while the
            # Alertmanager was starting arrives within seconds, not a minute.
            "--rules.alert.resend-delay=10s",
        ]

    def render(self, config: dict[str, Any]) -> dict[str, Any]:
        base = self.template.parent
        config["rule_files"] = [str(base / pattern) for pattern in config.get("rule_files", [])]
        alertmanager = f"127.0.0.1:{self.settings.alertmanager_port}"
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
        if self.settings.federation:  # the link to South Jeolla's cluster
            target = f"127.0.0.1:{self.settings.mirrormaker_metrics_port}"
            config["scrape_configs"].append(
                {"job_name": "mirrormaker", "static_configs": [{"targets": [target]}]}
            )
        return config
