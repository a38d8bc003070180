"""South Jeolla's own Kafka cluster, and MirrorMaker 2 linking it to Gwangju's (HUB_FEDERATION=1).

The regional cluster is the local stack's Kafka again under a home of its own
(``$HUB_HOME/regions/jeonnam``): its own KRaft quorum, ports (the central ones + 20,000), TLS CA
and logins. South Jeolla's devices publish there through the same contract, and a regional hub
(the same workers with ``regional_env``: HUB_REGIONS=jeonnam) processes them there, writing the
super-regional database and publishing its results on the regional cluster. MirrorMaker 2
(Kafka's ``connect-mirror``, dedicated mode) copies the regional results to the central cluster
under the same names, exactly once: results cross the link, raw telemetry does not
(``docs/federation.md`` says why).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

from hub import principals, topics
from hub.settings import Settings, host_port
from tooling.stack import prereqs
from tooling.stack.errors import StackError
from tooling.stack.kafka import Kafka, pom_kafka_version
from tooling.stack.part import PartStatus, Say
from tooling.stack.process import is_alive, owned_pid, port_in_use, spawn, terminate, wait_until

REGION = "jeonnam"
CENTRAL = "gwangju"
PORT_OFFSET = 20_000
BACKSLASH = "\\"


def regional(settings: Settings, region: str = REGION) -> Settings:
    """The settings of the region's own cluster and hub: another home, ports, group and the
    region's sites only; the same database (the super-regional view)."""
    host, port = host_port(settings.kafka_bootstrap.split(",")[0], "HUB_KAFKA_BOOTSTRAP")
    sasl_host, sasl_port = host_port(
        settings.kafka_sasl_bootstrap.split(",")[0], "HUB_KAFKA_SASL_BOOTSTRAP"
    )
    home = settings.home / "regions" / region
    return replace(
        settings,
        home=home,
        kafka_ca=home / "tls" / "ca.pem",
        kafka_bootstrap=f"{host}:{port + PORT_OFFSET}",
        kafka_sasl_bootstrap=f"{sasl_host}:{sasl_port + PORT_OFFSET}",
        kafka_controller_port=settings.kafka_controller_port + PORT_OFFSET,
        kafka_brokers=1,
        replication_factor=1,
        app_id=f"{settings.app_id}-{region}",
        regions=region,
        worker_web_port=settings.worker_web_port + 20,
        federation=0,
    )


def regional_env(settings: Settings, region: str = REGION) -> dict[str, str]:
    """The environment a regional hub's processes run with (``hub worker``, ``hub simulate``,
    ``hub access``): the region's cluster and home, the central database."""
    r = regional(settings, region)
    return {
        "HUB_HOME": str(r.home),
        "HUB_KAFKA_BOOTSTRAP": r.kafka_bootstrap,
        "HUB_KAFKA_SASL_BOOTSTRAP": r.kafka_sasl_bootstrap,
        "HUB_KAFKA_CONTROLLER_PORT": str(r.kafka_controller_port),
        "HUB_APP_ID": r.app_id,
        "HUB_REGIONS": region,
        "HUB_WORKER_WEB_PORT": str(r.worker_web_port),
        "HUB_DATABASE_URL": settings.database_url,
        "HUB_FEDERATION": "0",
    }


class RegionalKafka(Kafka):
    """The region's cluster: ``hub stack`` calls it ``kafka-jeonnam``."""

    def __init__(self, settings: Settings, region: str = REGION) -> None:
        super().__init__(regional(settings, region))
        self.name = f"kafka-{region}"
        for node in self.nodes:
            node.name = self.name


def mirrored_topics(region: str = REGION) -> list[str]:
    """What crosses the link: the region's results, never its raw telemetry."""
    return [
        topics.SITE_AGGREGATES,
        topics.KPI_RESULTS,
        topics.KPI_ALERTS,
        *topics.partner_topics([region]),
    ]


def _cluster(alias: str, settings: Settings) -> list[str]:
    login = principals.login(settings, "admin")
    if login is None:
        raise StackError(f"mirrormaker: no admin login for cluster {alias} (is it up?)")
    return [
        f"{alias}.bootstrap.servers = {settings.kafka_bootstrap}",
        f"{alias}.security.protocol = {principals.HUB_PROTOCOL}",
        f"{alias}.sasl.mechanism = {principals.MECHANISM}",
        f"{alias}.sasl.jaas.config = org.apache.kafka.common.security.scram.ScramLoginModule "
        f'required username="{login.username}" password="{login.password}";',
    ]


def mm2_properties(settings: Settings, region: str = REGION) -> str:
    """MirrorMaker 2's configuration: both clusters' addresses and admin logins, then the
    flow (``flow_properties``)."""
    lines = [
        "# Written by `hub stack up` (HUB_FEDERATION=1); edits are overwritten.",
        f"clusters = {region}, {CENTRAL}",
        *_cluster(region, regional(settings, region)),
        *_cluster(CENTRAL, settings),
        *flow_properties(region),
        "",
    ]
    return "\n".join(lines)


def flow_properties(region: str = REGION) -> list[str]:
    """One flow, region -> centre: the result topics under their own names
    (IdentityReplicationPolicy: partners and the notifier read the same topics as before),
    exactly once, heartbeats and checkpoints on, partners' offsets translated. The compose
    file's copy (``deploy/mirrormaker/mm2.compose.properties``) is held to it by a test."""
    source, target = region, CENTRAL
    flow = f"{source}->{target}"
    # Regular expressions, their dots escaped (doubled: a properties file takes one).
    names = ", ".join(t.replace(".", BACKSLASH * 2 + ".") for t in mirrored_topics(region))
    return [
        f"{flow}.enabled = true",
        f"{target}->{source}.enabled = false",
        f"{flow}.topics = {names}",
        # Partners' groups: their offsets are translated, so one can move to the other cluster.
        f"{flow}.groups = .*",
        f"{flow}.emit.heartbeats.enabled = true",
        f"{flow}.emit.checkpoints.enabled = true",
        f"{flow}.sync.group.offsets.enabled = true",
        "replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy",
        # The central topics exist with the hub's own settings and ACLs: not overwritten.
        "sync.topic.configs.enabled = false",
        "sync.topic.acls.enabled = false",
        f"{target}.exactly.once.source.support = enabled",
        "replication.factor = 1",
        "checkpoints.topic.replication.factor = 1",
        "heartbeats.topic.replication.factor = 1",
        "offset-syncs.topic.replication.factor = 1",
        "offset.storage.replication.factor = 1",
        "status.storage.replication.factor = 1",
        "config.storage.replication.factor = 1",
        "refresh.topics.interval.seconds = 10",
        "refresh.groups.interval.seconds = 10",
        "emit.checkpoints.interval.seconds = 5",
        "sync.group.offsets.interval.seconds = 5",
    ]


class MirrorMaker:
    """MirrorMaker 2 in dedicated mode, from Kafka's jars (``deploy/mirrormaker/pom.xml``), with
    Prometheus's JMX exporter as its agent: its metrics on HUB_MIRRORMAKER_METRICS_PORT."""

    name = "mirrormaker"

    def __init__(self, settings: Settings, region: str = REGION) -> None:
        self.settings = settings
        self.region = region
        self.dir = settings.home / "mirrormaker"
        self.pom = settings.deploy_dir / "mirrormaker" / "pom.xml"
        self.version = pom_kafka_version(self.pom)
        self.libs = self.dir / f"libs-{self.version}"
        self.config = self.dir / "mm2.properties"
        self.pidfile = self.dir / "mirrormaker.pid"
        self.logs = self.dir / "logs"
        self.port = settings.mirrormaker_metrics_port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        return owned_pid(self.pidfile, str(self.config))

    def status(self) -> PartStatus:
        pid = self.pid()
        return PartStatus(
            self.name,
            "running" if pid else "stopped",
            pid,
            self.address,
            f"MirrorMaker 2 (Apache Kafka {self.version})",
            f"{self.region} -> {CENTRAL}",
        )

    def up(self, say: Say) -> PartStatus:
        if self.pid() is not None:
            return self.status()
        if port_in_use("127.0.0.1", self.port):
            raise StackError(
                f"mirrormaker: port {self.port} is taken by another process; stop it, or set "
                "HUB_MIRRORMAKER_METRICS_PORT"
            )
        prereqs.ensure([prereqs.JAVA, prereqs.MAVEN], say)
        self._fetch_jars(say)
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:  # mode 600: it holds both clusters' admin logins
            out.write(mm2_properties(self.settings, self.region))
        pid = spawn(self.command(), self.logs / "stdout.log", self.pidfile)
        took = wait_until(
            lambda: port_in_use("127.0.0.1", self.port),
            what=f"mirrormaker (pid {pid})",
            timeout_s=self.settings.stack_start_timeout_s,
            alive=lambda: is_alive(pid),  # the process spawned, not the pidfile's reading
            log=self.logs / "stdout.log",
        )
        say(f"mirrormaker: started MirrorMaker 2, {self.region} -> {CENTRAL}, in {took:.1f} s")
        return self.status()

    def command(self) -> list[str]:
        java = shutil.which("java") or "java"
        exporter = self.settings.deploy_dir / "mirrormaker" / "jmx-exporter.yml"
        agent = next(self.libs.glob("jmx_prometheus_javaagent-*.jar"))
        log4j = self.settings.deploy_dir / "kafka" / "log4j2.properties"
        return [
            java,
            "-Xms128m",
            "-Xmx512m",
            f"-javaagent:{agent}=127.0.0.1:{self.port}:{exporter}",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.logs}",
            "-cp",
            f"{self.libs}/*",
            "org.apache.kafka.connect.mirror.MirrorMaker",
            str(self.config),
        ]

    def down(self, say: Say) -> PartStatus:
        pid = self.pid()
        if pid is not None:
            terminate(pid, timeout_s=60)
            say(f"mirrormaker: stopped pid {pid}")
        self.pidfile.unlink(missing_ok=True)
        return self.status()

    def outdated(self) -> bool:
        written = self.config.read_text() if self.config.exists() else ""
        return written != mm2_properties(self.settings, self.region)

    def _fetch_jars(self, say: Say) -> None:
        marker = self.libs / ".complete"
        if marker.exists():
            return
        say(f"mirrormaker: fetching MirrorMaker 2 ({self.version}) jars from Maven Central")
        staging = self.libs.with_name(self.libs.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        maven = ["mvn", "-B", "-q", "-f", str(self.pom)]
        for goal in (
            ["dependency:copy-dependencies", f"-DoutputDirectory={staging}"],
            [
                "dependency:copy",
                f"-Dartifact={_exporter(self.pom)}",
                f"-DoutputDirectory={staging}",
            ],
        ):
            result = subprocess.run(
                [*maven, *goal, "-DincludeScope=runtime"],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                errors = [line for line in result.stdout.splitlines() if "[ERROR]" in line]
                raise StackError(
                    "mirrormaker: fetching jars with Maven failed "
                    f"({(errors or ['no error line'])[0][:300]}); check access to Maven Central"
                )
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        marker.write_text(self.version + "\n")


def _exporter(pom: Path) -> str:
    """The JMX exporter agent the pom names (groupId:artifactId:version)."""
    text = pom.read_text()
    start = text.index("<jmx.exporter.version>") + len("<jmx.exporter.version>")
    version = text[start : text.index("</jmx.exporter.version>")]
    return f"io.prometheus.jmx:jmx_prometheus_javaagent:{version}"
