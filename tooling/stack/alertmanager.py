"""Alertmanager from Debian's package (``prometheus-alertmanager``): Prometheus' alerts go to it,
and it hands them to the hub's notifier.

It runs a copy of ``deploy/alertmanager/alertmanager.yml`` written by ``up``, with the
notifier's local address for the webhook. Its gossip port is switched off: a single local
Alertmanager has no peers, and the default port (9094) is the Kafka controller's.
"""

from __future__ import annotations

from typing import Any

from hub.settings import Settings
from tooling.stack import prereqs
from tooling.stack.daemon import ConfiguredDaemon


class Alertmanager(ConfiguredDaemon):
    name = "alertmanager"
    label = "Alertmanager"
    binary = "prometheus-alertmanager"
    tool = prereqs.ALERTMANAGER
    taken_hint = "stop it or set HUB_ALERTMANAGER_PORT"

    def __init__(self, settings: Settings) -> None:
        template = settings.deploy_dir / "alertmanager" / "alertmanager.yml"
        super().__init__(settings, "127.0.0.1", settings.alertmanager_port, template)

    def argv(self, binary: str) -> list[str]:
        return [
            binary,
            f"--config.file={self.config}",
            f"--storage.path={self.data}",
            f"--web.listen-address={self.address}",
            "--cluster.listen-address=",
        ]

    def render(self, config: dict[str, Any]) -> dict[str, Any]:
        """Every webhook pointed at the local notifier."""
        url = f"http://127.0.0.1:{self.settings.notify_port}/alertmanager"
        for receiver in config.get("receivers", []):
            for webhook in receiver.get("webhook_configs", []):
                webhook["url"] = url
        return config
