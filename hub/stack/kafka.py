"""Apache Kafka 4.1 in KRaft mode, one combined broker+controller, from Maven Central's jars.

Jars are fetched once per version by ``mvn dependency:copy-dependencies`` over
``deploy/kafka/pom.xml``; storage is formatted once (its ``meta.properties`` is the marker);
the broker runs as ``java -cp libs/* kafka.Kafka server.properties`` with log4j2 writing to
``$HUB_HOME/kafka/logs``.
"""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from hub.settings import Settings, host_port
from hub.stack import prereqs
from hub.stack.errors import StackError
from hub.stack.part import PartStatus, Say
from hub.stack.process import owned_pid, port_in_use, spawn, terminate, wait_until

JAVA_MAJOR = 17


def pom_kafka_version(pom: Path) -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom.read_text())
    if not match:
        raise StackError(f"{pom}: no <kafka.version> property")
    return match.group(1).strip()


def java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', out.stderr + out.stdout)
    return int(match.group(1)) if match else 0


def server_properties(settings: Settings, data_dir: Path) -> str:
    host, port = host_port(settings.kafka_bootstrap.split(",")[0], "HUB_KAFKA_BOOTSTRAP")
    sasl = settings.kafka_sasl_bootstrap.split(",")[0]
    controller = f"{host}:{settings.kafka_controller_port}"
    return "\n".join(
        [
            "# Written by `hub stack up`; edits are overwritten.",
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{controller}",
            # The hub's own listener (loopback; its principal, ANONYMOUS, is the super user) and
            # the one devices and partners use: SCRAM users, allowed only what their ACLs say.
            f"listeners=PLAINTEXT://{host}:{port},SASL_PLAINTEXT://{sasl},"
            f"CONTROLLER://{controller}",
            f"advertised.listeners=PLAINTEXT://{host}:{port},SASL_PLAINTEXT://{sasl}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,"
            "CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users=User:ANONYMOUS",
            "allow.everyone.if.no.acl.found=false",
            f"log.dirs={data_dir}",
            # The hub creates every topic it needs; a typo must not create a new one.
            "auto.create.topics.enable=false",
            "num.partitions=12",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.hours=168",
            "",
        ]
    )


async def _answers(bootstrap: str) -> bool:
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await client.bootstrap()
        return bool(client.cluster.brokers())
    except Exception:
        return False
    finally:
        await client.close()


def kafka_answers(bootstrap: str) -> bool:
    """True once the broker answers a metadata request (an open port is not enough)."""
    return asyncio.run(_answers(bootstrap))


class Kafka:
    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home / "kafka"
        self.pom = settings.deploy_dir / "kafka" / "pom.xml"
        self.version = pom_kafka_version(self.pom)
        self.libs = self.dir / f"libs-{self.version}"
        self.data = self.dir / "data"
        self.config = self.dir / "server.properties"
        self.pidfile = self.dir / "kafka.pid"
        self.log = self.dir / "logs" / "stdout.log"
        self.host, self.port = host_port(
            settings.kafka_bootstrap.split(",")[0], "HUB_KAFKA_BOOTSTRAP"
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _pid(self) -> int | None:
        return owned_pid(self.pidfile, str(self.config))

    def status(self) -> PartStatus:
        pid = self._pid()
        return PartStatus(
            self.name,
            "running" if pid else "stopped",
            pid,
            self.address,
            f"Apache Kafka {self.version}",
        )

    def up(self, say: Say) -> PartStatus:
        if self._pid() is not None:
            return self.status()
        sasl_host, sasl_port = host_port(
            self.settings.kafka_sasl_bootstrap.split(",")[0], "HUB_KAFKA_SASL_BOOTSTRAP"
        )
        for host, port in (
            (self.host, self.port),
            (self.host, self.settings.kafka_controller_port),
            (sasl_host, sasl_port),
        ):
            if port_in_use(host, port):
                raise StackError(
                    f"kafka: port {host}:{port} is taken by another process; stop it, or choose "
                    "other ports with HUB_KAFKA_BOOTSTRAP / HUB_KAFKA_SASL_BOOTSTRAP / "
                    "HUB_KAFKA_CONTROLLER_PORT"
                )
        prereqs.ensure([prereqs.JAVA, prereqs.MAVEN], say)
        java = shutil.which("java") or "java"
        if (major := java_major(java)) < JAVA_MAJOR:
            raise StackError(
                f"kafka: {java} is Java {major}; Kafka {self.version} needs Java {JAVA_MAJOR}+ "
                "(apt-get install openjdk-17-jre-headless, or put it first on PATH)"
            )
        self._fetch_jars(say)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(server_properties(self.settings, self.data))
        self._format_storage(java, say)
        pid = spawn(self._command(java, "kafka.Kafka", str(self.config)), self.log, self.pidfile)
        took = wait_until(
            lambda: port_in_use(self.host, self.port) and kafka_answers(self.address),
            what=f"kafka (pid {pid})",
            timeout_s=self.settings.stack_start_timeout_s,
            alive=lambda: self._pid() is not None,
            log=self.dir / "logs" / "server.log",
        )
        say(f"kafka: started Apache Kafka {self.version} in {took:.1f} s")
        return self.status()

    def outdated(self) -> bool:
        written = self.config.read_text() if self.config.exists() else ""
        return written != server_properties(self.settings, self.data)

    def down(self, say: Say) -> PartStatus:
        pid = self._pid()
        if pid is not None:
            terminate(pid, timeout_s=60)
            say(f"kafka: stopped pid {pid}")
        self.pidfile.unlink(missing_ok=True)
        return self.status()

    def _command(self, java: str, main: str, *args: str) -> list[str]:
        log4j = self.settings.deploy_dir / "kafka" / "log4j2.properties"
        return [
            java,
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.dir / 'logs'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def _fetch_jars(self, say: Say) -> None:
        marker = self.libs / ".complete"
        if marker.exists():
            return
        say(f"kafka: fetching Apache Kafka {self.version} jars from Maven Central")
        staging = self.libs.with_name(self.libs.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        result = subprocess.run(
            [
                "mvn",
                "-B",
                "-q",
                "-f",
                str(self.pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            errors = [line for line in result.stdout.splitlines() if "[ERROR]" in line]
            raise StackError(
                "kafka: fetching jars with Maven failed "
                f"({(errors or ['no error line'])[0][:300]}); check network access to Maven Central"
            )
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        marker.write_text(self.version + "\n")

    def _format_storage(self, java: str, say: Say) -> None:
        if (self.data / "meta.properties").exists():
            return
        cluster_id_file = self.dir / "cluster.id"
        if not cluster_id_file.exists():
            # A Kafka cluster id is 16 random bytes in URL-safe base64 without padding.
            raw = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            cluster_id_file.write_text(raw + "\n")
        cluster_id = cluster_id_file.read_text().strip()
        say(f"kafka: formatting KRaft storage (cluster {cluster_id})")
        result = subprocess.run(
            self._command(
                java,
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                "-t",
                cluster_id,
                "-c",
                str(self.config),
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise StackError(f"kafka: formatting storage failed: {last[0][:300]}")
