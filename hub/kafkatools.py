"""Kafka's own Java tools (``kafka.admin.ConfigCommand``, ...), run from Kafka's jars as hub-admin.

``hub access`` sets a device's produce quota with ``ConfigCommand``: librdkafka's admin API has no
client quotas. The jars and the admin login are where the local stack puts them
(``$HUB_HOME/kafka``); the stack runs its brokers with the same command line (``java_command``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from hub.errors import HubError
from hub.settings import Settings


class KafkaToolError(HubError):
    """A Kafka tool is not installed, or failed: the message says which and why."""


def kafka_version(pom: Path) -> str:
    """The Kafka release the deployment pins (``deploy/kafka/pom.xml``)."""
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom.read_text())
    if not match:
        raise KafkaToolError(f"{pom}: no <kafka.version> property")
    return match.group(1).strip()


def kafka_dir(settings: Settings) -> Path:
    return settings.home / "kafka"


def kafka_libs(settings: Settings) -> Path:
    """Where the jars of the pinned release are (fetched by `hub stack up`)."""
    version = kafka_version(settings.deploy_dir / "kafka" / "pom.xml")
    return kafka_dir(settings) / f"libs-{version}"


def admin_properties(settings: Settings) -> Path:
    """Kafka's Java tools log in with these (``--command-config``), as hub-admin."""
    return kafka_dir(settings) / "admin.properties"


def java_command(
    settings: Settings, libs: Path, java: str, main: str, *args: str, logs: Path
) -> list[str]:
    """A Kafka main class (a tool, or the broker itself) on the JVM, from ``libs``."""
    log4j = settings.deploy_dir / "kafka" / "log4j2.properties"
    return [
        java,
        "-Xms256m",
        "-Xmx1g",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={logs}",
        "-cp",
        f"{libs}/*",
        main,
        *args,
    ]


def run_tool(settings: Settings, main: str, *args: str) -> str:
    """One of Kafka's admin tools, logged in as hub-admin on the hub's listener: its output, or
    KafkaToolError with its first error line."""
    libs = kafka_libs(settings)
    if not (libs / ".complete").exists():
        raise KafkaToolError("Kafka's jars are not installed: run `hub stack up` first")
    login = admin_properties(settings)
    if not login.exists():
        raise KafkaToolError("the hub's admin login is not set up: run `hub stack up` first")
    argv = java_command(
        settings,
        libs,
        shutil.which("java") or "java",
        main,
        "--bootstrap-server",
        settings.kafka_bootstrap,
        "--command-config",
        str(login),
        *args,
        logs=kafka_dir(settings) / "logs",
    )
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        lines = [
            line
            for line in (result.stderr or result.stdout).strip().splitlines()
            if not line.startswith("SLF4J:")  # the logging library's own chatter
        ]
        errors = [line for line in lines if "Error" in line or "Exception" in line]
        raise KafkaToolError(f"{main.rsplit('.', 1)[-1]} failed: {(errors or lines or ['?'])[0]}")
    return result.stdout
