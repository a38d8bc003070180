"""Apache Kafka 4.1 in KRaft mode from Maven Central's jars: one combined broker+controller, or a
replicated cluster of three (``HUB_KAFKA_BROKERS=3``), each node a broker and a controller.

Jars are fetched once per version by ``mvn dependency:copy-dependencies`` over
``deploy/kafka/pom.xml`` and shared by the nodes; each node's storage is formatted once (its
``meta.properties`` is the marker) with the cluster's id; a node runs as
``java -cp libs/* kafka.Kafka server.properties`` with log4j2 writing to its ``logs``.

Node N (1, 2, 3) listens on the configured ports plus 100 x (N - 1): with the defaults 9092, 9192
and 9292 (the hub's plaintext listener), 9093, 9193, 9293 (SASL) and 9094, 9194, 9294 (the
controllers' quorum). Clients need only the first: they learn the others from it. A single node
keeps the layout it always had (``$HUB_HOME/kafka``); a cluster's nodes live in
``$HUB_HOME/kafka/node-N``.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from hub import kafkatools, principals
from hub.principals import BROKER, principal
from hub.settings import Settings, host_port
from tooling.stack import prereqs, tls
from tooling.stack import principals as stack_principals
from tooling.stack.errors import StackError
from tooling.stack.part import PartStatus, Say
from tooling.stack.process import is_alive, owned_pid, port_in_use, spawn, terminate, wait_until
from tooling.stack.tls import TlsFiles

JAVA_MAJOR = 17
# The produce quota of the hub's own worker and tools: 1 GiB/s, i.e. none in practice.
UNTHROTTLED = 2**30
PORT_STEP = 100


def pom_kafka_version(pom: Path) -> str:
    try:
        return kafkatools.kafka_version(pom)
    except kafkatools.KafkaToolError as error:
        raise StackError(str(error)) from None


def java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', out.stderr + out.stdout)
    return int(match.group(1)) if match else 0


@dataclass(frozen=True, slots=True)
class NodeAddress:
    """Where node ``node`` of the cluster listens."""

    node: int
    host: str
    port: int  # the hub's plaintext listener
    sasl_host: str
    sasl_port: int
    controller_port: int

    @classmethod
    def of(cls, settings: Settings, node: int) -> NodeAddress:
        host, port = host_port(settings.kafka_bootstrap.split(",")[0], "HUB_KAFKA_BOOTSTRAP")
        sasl_host, sasl_port = host_port(
            settings.kafka_sasl_bootstrap.split(",")[0], "HUB_KAFKA_SASL_BOOTSTRAP"
        )
        step = PORT_STEP * (node - 1)
        return cls(
            node,
            host,
            port + step,
            sasl_host,
            sasl_port + step,
            settings.kafka_controller_port + step,
        )

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def controller(self) -> str:
        return f"{self.host}:{self.controller_port}"


def server_properties(
    settings: Settings, node: int, data_dir: Path, broker_password: str, keystore: Path
) -> str:
    brokers = settings.kafka_brokers
    me = NodeAddress.of(settings, node)
    voters = ",".join(
        f"{n}@{NodeAddress.of(settings, n).controller}" for n in range(1, brokers + 1)
    )
    replicated = brokers > 1
    # One node: every internal topic has one copy. Three: three copies, and a write is
    # acknowledged once two hold it (acks=all), so one broker may fail without loss or refusal.
    copies, in_sync = (3, 2) if replicated else (1, 1)
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{BROKER}" password="{broker_password}" user_{BROKER}="{broker_password}";'
    )
    lines = [
        "# Written by `hub stack up`; edits are overwritten.",
        "process.roles=broker,controller",
        f"node.id={node}",
        f"controller.quorum.voters={voters}",
        # Three listeners, none anonymous. HUB: the hub's services (SCRAM logins of their own,
        # hub.principals), not encrypted (loopback, or the deployment's private network).
        # DEVICES: devices and partners, SCRAM over TLS with the stack's certificate. CONTROLLER:
        # the KRaft quorum. Brokers and controllers log in to each other as hub-broker (PLAIN,
        # defined here: it exists before any SCRAM login does).
        f"listeners=HUB://{me.bootstrap},DEVICES://{me.sasl_host}:{me.sasl_port},"
        f"CONTROLLER://{me.controller}",
        f"advertised.listeners=HUB://{me.bootstrap},DEVICES://{me.sasl_host}:{me.sasl_port}",
        "listener.security.protocol.map=HUB:SASL_PLAINTEXT,DEVICES:SASL_SSL,"
        "CONTROLLER:SASL_PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=HUB",
        "sasl.mechanism.inter.broker.protocol=PLAIN",
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.hub.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN",
        f"listener.name.hub.scram-sha-512.sasl.jaas.config={scram}",
        f"listener.name.hub.plain.sasl.jaas.config={plain}",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        f"listener.name.controller.plain.sasl.jaas.config={plain}",
        "listener.name.devices.sasl.enabled.mechanisms=SCRAM-SHA-512",
        f"listener.name.devices.scram-sha-512.sasl.jaas.config={scram}",
        "listener.name.devices.ssl.keystore.type=PEM",
        f"listener.name.devices.ssl.keystore.location={keystore}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{BROKER};User:{principal('admin')}",
        "allow.everyone.if.no.acl.found=false",
        f"log.dirs={data_dir}",
        # The hub creates every topic it needs; a typo must not create a new one.
        "auto.create.topics.enable=false",
        "num.partitions=12",
        f"offsets.topic.replication.factor={copies}",
        f"transaction.state.log.replication.factor={copies}",
        f"transaction.state.log.min.isr={in_sync}",
        f"share.coordinator.state.topic.replication.factor={copies}",
        f"share.coordinator.state.topic.min.isr={in_sync}",
    ]
    if replicated:
        lines += [
            f"default.replication.factor={copies}",
            f"min.insync.replicas={in_sync}",
        ]
    lines += ["group.initial.rebalance.delay.ms=0", "log.retention.hours=168", ""]
    return "\n".join(lines)


class KafkaNode:
    """One broker+controller process of the cluster."""

    def __init__(self, settings: Settings, node: int, libs: Path, version: str) -> None:
        self.settings = settings
        self.node = node
        self.libs = libs
        self.version = version
        root = settings.home / "kafka"
        self.dir = root if settings.kafka_brokers == 1 else root / f"node-{node}"
        self.data = self.dir / "data"
        self.config = self.dir / "server.properties"
        self.pidfile = self.dir / "kafka.pid"
        self.logs = self.dir / "logs"
        self.address = NodeAddress.of(settings, node)
        self.name = "kafka" if settings.kafka_brokers == 1 else f"kafka-{node}"

    def pid(self) -> int | None:
        return owned_pid(self.pidfile, str(self.config))

    def status(self) -> PartStatus:
        pid = self.pid()
        return PartStatus(
            self.name,
            "running" if pid else "stopped",
            pid,
            self.address.bootstrap,
            f"Apache Kafka {self.version}",
            f"node {self.node} of {self.settings.kafka_brokers}"
            if self.settings.kafka_brokers > 1
            else "",
        )

    def properties(self) -> str:
        tls = TlsFiles.under(self.settings.home)
        password = stack_principals.logins(self.settings)[BROKER]
        return server_properties(self.settings, self.node, self.data, password, tls.keystore)

    def check_ports(self) -> None:
        a = self.address
        for host, port in (
            (a.host, a.port),
            (a.host, a.controller_port),
            (a.sasl_host, a.sasl_port),
        ):
            if port_in_use(host, port):
                raise StackError(
                    f"{self.name}: port {host}:{port} is taken by another process; stop it, or "
                    "choose other ports with HUB_KAFKA_BOOTSTRAP / HUB_KAFKA_SASL_BOOTSTRAP / "
                    "HUB_KAFKA_CONTROLLER_PORT"
                )

    def start(self, java: str, cluster_id: str, say: Say) -> int:
        self.dir.mkdir(parents=True, exist_ok=True)
        # Mode 600: it holds the broker's password.
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.properties())
        self._format_storage(java, cluster_id, say)
        return spawn(
            kafkatools.java_command(
                self.settings, self.libs, java, "kafka.Kafka", str(self.config), logs=self.logs
            ),
            self.logs / "stdout.log",
            self.pidfile,
        )

    def stop(self, say: Say) -> None:
        pid = self.pid()
        if pid is not None:
            terminate(pid, timeout_s=60)
            say(f"{self.name}: stopped pid {pid}")
        self.pidfile.unlink(missing_ok=True)

    def outdated(self) -> bool:
        written = self.config.read_text() if self.config.exists() else ""
        return written != self.properties()

    def _format_storage(self, java: str, cluster_id: str, say: Say) -> None:
        if (self.data / "meta.properties").exists():
            return
        say(f"{self.name}: formatting KRaft storage (cluster {cluster_id})")
        result = subprocess.run(
            kafkatools.java_command(
                self.settings,
                self.libs,
                java,
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                # One argument: an id may begin with "-" (base64), which a parser takes for an
                # option when it stands alone.
                f"--cluster-id={cluster_id}",
                "-c",
                str(self.config),
                logs=self.logs,
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise StackError(f"{self.name}: formatting storage failed: {last[0][:300]}")


class Kafka:
    """The local Kafka cluster: ``HUB_KAFKA_BROKERS`` nodes (1 or 3), started and stopped
    together by pidfile."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home / "kafka"
        self.pom = settings.deploy_dir / "kafka" / "pom.xml"
        self.version = pom_kafka_version(self.pom)
        self.libs = self.dir / f"libs-{self.version}"
        self.nodes = [
            KafkaNode(settings, n, self.libs, self.version)
            for n in range(1, settings.kafka_brokers + 1)
        ]
        self.host, self.port = self.nodes[0].address.host, self.nodes[0].address.port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def status(self) -> PartStatus:
        """The cluster as one part: running when every node is."""
        nodes = [n.status() for n in self.nodes]
        running = all(s.state == "running" for s in nodes)
        detail = ""
        if len(nodes) > 1:
            detail = f"{sum(s.state == 'running' for s in nodes)} of {len(nodes)} brokers running"
        return PartStatus(
            self.name,
            "running" if running else "stopped",
            nodes[0].pid,
            self.address,
            f"Apache Kafka {self.version}",
            detail,
        )

    def statuses(self) -> list[PartStatus]:
        """Each broker, for ``hub stack status``."""
        return [n.status() for n in self.nodes]

    def up(self, say: Say) -> PartStatus:
        stopped = [n for n in self.nodes if n.pid() is None]
        if not stopped:
            if self.admin_properties.exists():
                self._set_quotas(say)  # a marker: nothing to do once done
            return self.status()
        for node in stopped:
            node.check_ports()
        prereqs.ensure([prereqs.JAVA, prereqs.MAVEN], say)
        java = shutil.which("java") or "java"
        if (major := java_major(java)) < JAVA_MAJOR:
            raise StackError(
                f"{self.name}: {java} is Java {major}; Kafka {self.version} needs Java "
                f"{JAVA_MAJOR}+ (apt-get install openjdk-17-jre-headless, or put it first on PATH)"
            )
        self._fetch_jars(say)
        if tls.ensure(TlsFiles.under(self.settings.home), self.tls_hosts()):
            ca = self.settings.kafka_ca
            say(f"{self.name}: TLS certificate for its SASL_SSL listener (CA: {ca})")
        cluster_id = self._cluster_id()
        pids = [node.start(java, cluster_id, say) for node in stopped]
        brokers = len(self.nodes)
        took = wait_until(
            lambda: (
                all(port_in_use(n.address.host, n.address.port) for n in self.nodes)
                and stack_principals.answers(self.settings, brokers)
            ),
            what=f"kafka (pids {', '.join(map(str, pids))})",
            timeout_s=self.settings.stack_start_timeout_s,
            # By pid: a child just spawned may not have exec'd java yet (no marker to find).
            alive=lambda: all(is_alive(pid) for pid in pids),
            log=stopped[0].logs / "server.log",
        )
        started = ", ".join(n.name for n in stopped)
        say(f"{started}: started Apache Kafka {self.version} in {took:.1f} s")
        stack_principals.create_services(self.settings)
        self._write_admin_properties()
        self._set_quotas(say)
        return self.status()

    def tool(self, main: str, *args: str) -> str:
        """One of Kafka's own admin tools, as hub-admin (``hub.kafkatools.run_tool``)."""
        try:
            return kafkatools.run_tool(self.settings, main, *args)
        except kafkatools.KafkaToolError as error:
            raise StackError(str(error)) from None

    def _set_quotas(self, say: Say) -> None:
        """Every login is held to HUB_DEVICE_BYTE_RATE a second of produce (the default user
        quota: a device's, whether added alone or by the thousand), but the hub's worker and its
        operators' tools. Once per rate (a marker), Kafka's ConfigCommand has no batch form."""
        rate = self.settings.device_byte_rate
        marker = self.dir / f"quotas-{rate}"
        if marker.exists():
            return
        users = ("--entity-type", "users")
        self.tool(
            "kafka.admin.ConfigCommand",
            *users,
            "--entity-default",
            "--alter",
            "--add-config",
            f"producer_byte_rate={rate}",
        )
        for name in (principal("worker"), principal("admin")):
            self.tool(
                "kafka.admin.ConfigCommand",
                *users,
                "--entity-name",
                name,
                "--alter",
                "--add-config",
                f"producer_byte_rate={UNTHROTTLED}",
            )
        for old in self.dir.glob("quotas-*"):
            old.unlink()
        marker.write_text(f"{rate}\n")
        say(f"{self.name}: logins held to {rate:,} bytes/s of produce, but the hub's own")

    def tls_hosts(self) -> list[str]:
        """The names the SASL_SSL listener's certificate carries: its address, and the names
        it has in compose and on the loopback."""
        return sorted({self.nodes[0].address.sasl_host, "127.0.0.1", "localhost", "kafka"})

    @property
    def admin_properties(self) -> Path:
        return kafkatools.admin_properties(self.settings)

    def _write_admin_properties(self) -> None:
        fd = os.open(self.admin_properties, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(principals.java_properties(self.settings, "admin"))

    def outdated(self) -> bool:
        return any(n.outdated() for n in self.nodes)

    def down(self, say: Say) -> PartStatus:
        for node in reversed(self.nodes):
            node.stop(say)
        return self.status()

    def active_controller(self) -> int | None:
        """The node leading the KRaft quorum now (Kafka's MetadataQuorumCommand), None if no
        quorum answers."""
        java = shutil.which("java") or "java"
        argv = self._command(
            java,
            "org.apache.kafka.tools.MetadataQuorumCommand",
            "--bootstrap-server",
            ",".join(n.address.bootstrap for n in self.nodes),
            "--command-config",
            str(self.admin_properties),
            "describe",
            "--status",
        )
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        match = re.search(r"^LeaderId:\s+(\d+)", result.stdout, re.MULTILINE)
        return int(match.group(1)) if match else None

    def _command(self, java: str, main: str, *args: str) -> list[str]:
        """A Kafka tool (or the broker) from the stack's jars."""
        return kafkatools.java_command(
            self.settings, self.libs, java, main, *args, logs=self.dir / "logs"
        )

    def _cluster_id(self) -> str:
        cluster_id_file = self.dir / "cluster.id"
        if not cluster_id_file.exists():
            # A Kafka cluster id is 16 random bytes in URL-safe base64 without padding.
            self.dir.mkdir(parents=True, exist_ok=True)
            raw = "-"
            while raw.startswith("-"):  # as Kafka's own Uuid.randomUuid: never a leading "-"
                raw = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            cluster_id_file.write_text(raw + "\n")
        return cluster_id_file.read_text().strip()

    def _fetch_jars(self, say: Say) -> None:
        marker = self.libs / ".complete"
        if marker.exists():
            return
        say(f"{self.name}: fetching Apache Kafka {self.version} jars from Maven Central")
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
                f"{self.name}: fetching jars with Maven failed "
                f"({(errors or ['no error line'])[0][:300]}); check network access to Maven Central"
            )
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        marker.write_text(self.version + "\n")
