"""The local stack: real Kafka, TimescaleDB, Prometheus and Alertmanager, run natively from
``$HUB_HOME``.

Parts come up in dependency order (database, broker, the alert router, then the scraper that
sends to it) and go down in reverse. With HUB_FEDERATION=1, South Jeolla's own broker and the
MirrorMaker 2 linking it to this one come up after the broker (``tooling.stack.federation``).
"""

from __future__ import annotations

from collections.abc import Sequence

from hub.settings import Settings
from tooling.stack.alertmanager import Alertmanager
from tooling.stack.errors import StackError
from tooling.stack.federation import MirrorMaker, RegionalKafka
from tooling.stack.kafka import Kafka
from tooling.stack.part import Part, PartStatus, Say
from tooling.stack.prometheus import Prometheus
from tooling.stack.timescaledb import TimescaleDB

__all__ = ["PART_NAMES", "PartStatus", "Stack", "StackError"]

PART_NAMES = ("timescaledb", "kafka", "alertmanager", "prometheus")
FEDERATION_PARTS = ("kafka-jeonnam", "mirrormaker")


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.parts: dict[str, Part] = {
            "timescaledb": TimescaleDB(settings),
            "kafka": Kafka(settings),
        }
        # Once run, they stay in `status` and `down` whatever HUB_FEDERATION says now: a stack
        # brought up federated is brought down whole.
        if settings.federation or (settings.home / "mirrormaker").exists():
            self.parts["kafka-jeonnam"] = RegionalKafka(settings)
            self.parts["mirrormaker"] = MirrorMaker(settings)
        self.parts["alertmanager"] = Alertmanager(settings)
        self.parts["prometheus"] = Prometheus(settings)

    def select(self, names: Sequence[str]) -> list[Part]:
        unknown = [name for name in names if name not in self.parts]
        if unknown:
            raise StackError(
                f"unknown part {', '.join(unknown)}; parts are {', '.join(self.parts)}"
                + (
                    ""
                    if self.settings.federation
                    else f" (HUB_FEDERATION=1 adds {', '.join(FEDERATION_PARTS)})"
                )
            )
        return [part for name, part in self.parts.items() if not names or name in names]

    def status(self, names: Sequence[str] = ()) -> list[PartStatus]:
        """A row per part, and per broker of a replicated Kafka cluster."""
        rows: list[PartStatus] = []
        for part in self.select(names):
            if isinstance(part, Kafka) and len(part.nodes) > 1:
                rows.extend(part.statuses())
            else:
                rows.append(part.status())
        return rows

    def up(self, say: Say, names: Sequence[str] = ()) -> list[PartStatus]:
        self.settings.home.mkdir(parents=True, exist_ok=True)
        statuses = []
        for part in self.select(names):
            if part.name in FEDERATION_PARTS and not self.settings.federation:
                statuses.append(part.status())  # started by HUB_FEDERATION=1 only
                continue
            before = part.status()
            if before.state == "running" and part.outdated():
                say(f"{part.name}: its configuration changed; restarting")
                part.down(say)
                statuses.append(part.up(say))
            elif before.state == "running":
                say(f"{part.name}: already running (pid {before.pid})")
                # Left alone (an up of a running part only completes what a newer release
                # sets up, once: the broker's quotas, say).
                statuses.append(part.up(say))
            else:
                statuses.append(part.up(say))
        return statuses

    def down(self, say: Say, names: Sequence[str] = ()) -> list[PartStatus]:
        return [part.down(say) for part in reversed(self.select(names))]
