"""One typed settings object, read from the environment once at start and passed in.

Every default is the local one from the contract; every field can be overridden by its
``HUB_*`` variable so the same code runs against the local stack, docker-compose or production.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from hub.errors import HubError
from hub.telemetry import MAX_FUTURE_MS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Which of the hub's principals a process is to Kafka (``hub.principals``).
KafkaRole = Literal["admin", "worker", "notify", "api"]


class SettingsError(HubError):
    """A HUB_* variable holds a value the hub cannot use; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: not an integer") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: not a number") from None


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name) or ""
    networks = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise SettingsError(
                f"{name}={raw!r}: {part!r} is not a network (e.g. 127.0.0.0/8)"
            ) from None
    return tuple(networks)


def host_port(address: str, variable: str) -> tuple[str, int]:
    """Split ``host:port``; the error names the variable the address came from."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SettingsError(f"{variable}={address!r}: expected host:port")
    return host, int(port)


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """The parts of ``HUB_DATABASE_URL`` the local stack needs to create the role and database."""

    host: str
    port: int
    user: str
    password: str
    dbname: str

    @classmethod
    def parse(cls, url: str) -> DatabaseTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
            raise SettingsError(
                f"HUB_DATABASE_URL={url!r}: expected postgresql://user:pass@host:port/db"
            )
        return cls(
            host=parts.hostname,
            port=parts.port or 5432,
            user=parts.username or "hub",
            password=parts.password or "",
            dbname=parts.path.lstrip("/") or "hub",
        )


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_sasl_bootstrap: str = "127.0.0.1:9093"
    # Who this process is to the broker (``hub.principals``): its role picks its principal in
    # the local stack's logins; HUB_KAFKA_USERNAME/PASSWORD name one outright.
    kafka_role: KafkaRole = "admin"
    kafka_username: str = ""
    kafka_password: str = ""
    # The CA that signed the SASL_SSL listener's certificate (the local stack makes its own).
    kafka_ca: Path = field(default_factory=lambda: PROJECT_ROOT / ".hub" / "tls" / "ca.pem")
    database_url: str = "postgresql://hub:hub@127.0.0.1:5433/hub"
    api_port: int = 8000
    prometheus_address: str = "127.0.0.1:9090"
    alertmanager_port: int = 9095
    # Where long-running hub processes serve HTTP (/metrics, the notifier's webhook): loopback
    # by default; a container sets 0.0.0.0 so that Prometheus can reach it.
    bind_host: str = "127.0.0.1"
    # The notifier (`hub notify serve`): its HTTP port (Alertmanager's webhook, /metrics), the
    # SMTP server of e-mail receivers, and how long a KPI breach may stay open, unacknowledged,
    # before operators are told again.
    notify_port: int = 9096
    smtp_url: str = ""
    notify_escalate_after_s: float = 1800.0
    # Webhook targets the notifier refuses to reach unless inside one of these networks (CIDRs):
    # loopback, link-local, unspecified and multicast addresses (a company's webhook must not
    # make the hub call its own services, e.g. Prometheus on 127.0.0.1).
    notify_allow_networks: tuple[str, ...] = ()
    # Incidents notified per device: a burst of this many, then this many an hour (the rest
    # counted, and the next notice says how many were held back).
    notify_incident_burst: int = 5
    notify_incident_per_hour: float = 30.0
    home: Path = field(default_factory=lambda: PROJECT_ROOT / ".hub")
    project_root: Path = PROJECT_ROOT
    # Partitions of every topic the hub creates (the unit of parallelism across workers).
    partitions: int = 12
    # Brokers of the local stack (1, or 3 for a replicated cluster); the topics the hub creates
    # get one copy per broker up to three (HUB_REPLICATION_FACTOR overrides).
    kafka_brokers: int = 1
    replication_factor: int = 1
    # Stream processing (hub worker). The app id names the consumer group and the state topics:
    # another id is another, independent hub (the benchmark runs its own).
    app_id: str = "testbed-hub"
    worker_web_port: int = 6066  # worker N serves /metrics on this port + N
    batch_max: int = 5000  # records per fetch, handed over a partition at a time
    allowed_lateness_s: float = 120.0
    dedup_horizon_s: float = 600.0
    idle_timeout_s: float = 30.0
    # How far ahead of its arrival at the broker a record may move its partition's event time.
    clock_tolerance_s: float = 5.0
    tick_interval_s: float = 5.0
    registry_refresh_s: float = 5.0
    # How long the group waits for a silent worker before its partitions go to the others.
    session_timeout_s: float = 30.0
    # How long a worker may take over one batch (its database write included) before the group
    # gives its partitions to the others (Faust's default); fenced writes keep them exact.
    max_poll_interval_s: float = 1000.0
    # What `hub access add-device` lets a device produce, in bytes a second (a Kafka quota).
    device_byte_rate: int = 64 * 1024
    # Upkeep (run by `hub api`, or `hub upkeep` from cron): retention in days per table.
    retention_raw_days: float = 14.0
    retention_hourly_days: float = 400.0
    retention_kpi_days: float = 400.0
    retention_alert_days: float = 400.0
    # The DLQ topic (rejected records), the notifier's outbox (delivered or not) and the sink's
    # quarantine of rows the database refused.
    retention_dlq_days: float = 30.0
    retention_notify_days: float = 30.0
    retention_quarantine_days: float = 30.0
    upkeep_interval_s: float = 300.0
    # Internal to the local stack, not part of the contract.
    kafka_controller_port: int = 9094
    stack_start_timeout_s: float = 90.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = cls()
        home = env.get("HUB_HOME")
        settings = cls(
            kafka_bootstrap=env.get("HUB_KAFKA_BOOTSTRAP") or defaults.kafka_bootstrap,
            kafka_sasl_bootstrap=env.get("HUB_KAFKA_SASL_BOOTSTRAP")
            or defaults.kafka_sasl_bootstrap,
            kafka_username=env.get("HUB_KAFKA_USERNAME") or "",
            kafka_password=env.get("HUB_KAFKA_PASSWORD") or "",
            kafka_ca=Path(env["HUB_KAFKA_CA"]).resolve()
            if env.get("HUB_KAFKA_CA")
            else (Path(home).resolve() if home else defaults.home) / "tls" / "ca.pem",
            database_url=env.get("HUB_DATABASE_URL") or defaults.database_url,
            api_port=_int(env, "HUB_API_PORT", defaults.api_port),
            alertmanager_port=_int(env, "HUB_ALERTMANAGER_PORT", defaults.alertmanager_port),
            bind_host=env.get("HUB_BIND_HOST") or defaults.bind_host,
            notify_port=_int(env, "HUB_NOTIFY_PORT", defaults.notify_port),
            smtp_url=env.get("HUB_SMTP_URL") or defaults.smtp_url,
            notify_escalate_after_s=_float(
                env, "HUB_NOTIFY_ESCALATE_AFTER", defaults.notify_escalate_after_s
            ),
            notify_allow_networks=_networks(env, "HUB_NOTIFY_ALLOW_NETWORKS"),
            notify_incident_burst=_int(
                env, "HUB_NOTIFY_INCIDENT_BURST", defaults.notify_incident_burst
            ),
            notify_incident_per_hour=_float(
                env, "HUB_NOTIFY_INCIDENT_PER_HOUR", defaults.notify_incident_per_hour
            ),
            home=Path(home).resolve() if home else defaults.home,
            partitions=_int(env, "HUB_PARTITIONS", defaults.partitions),
            kafka_brokers=(brokers := _int(env, "HUB_KAFKA_BROKERS", defaults.kafka_brokers)),
            replication_factor=_int(env, "HUB_REPLICATION_FACTOR", min(3, max(1, brokers))),
            app_id=env.get("HUB_APP_ID") or defaults.app_id,
            worker_web_port=_int(env, "HUB_WORKER_WEB_PORT", defaults.worker_web_port),
            batch_max=_int(env, "HUB_BATCH_MAX", defaults.batch_max),
            device_byte_rate=_int(env, "HUB_DEVICE_BYTE_RATE", defaults.device_byte_rate),
            allowed_lateness_s=_float(env, "HUB_ALLOWED_LATENESS", defaults.allowed_lateness_s),
            dedup_horizon_s=_float(env, "HUB_DEDUP_HORIZON", defaults.dedup_horizon_s),
            idle_timeout_s=_float(env, "HUB_IDLE_TIMEOUT", defaults.idle_timeout_s),
            clock_tolerance_s=_float(env, "HUB_CLOCK_TOLERANCE", defaults.clock_tolerance_s),
            tick_interval_s=_float(env, "HUB_TICK_INTERVAL", defaults.tick_interval_s),
            registry_refresh_s=_float(env, "HUB_REGISTRY_REFRESH", defaults.registry_refresh_s),
            session_timeout_s=_float(env, "HUB_SESSION_TIMEOUT", defaults.session_timeout_s),
            max_poll_interval_s=_float(env, "HUB_MAX_POLL_INTERVAL", defaults.max_poll_interval_s),
            retention_raw_days=_float(env, "HUB_RETENTION_RAW_DAYS", defaults.retention_raw_days),
            retention_hourly_days=_float(
                env, "HUB_RETENTION_HOURLY_DAYS", defaults.retention_hourly_days
            ),
            retention_kpi_days=_float(env, "HUB_RETENTION_KPI_DAYS", defaults.retention_kpi_days),
            retention_alert_days=_float(
                env, "HUB_RETENTION_ALERT_DAYS", defaults.retention_alert_days
            ),
            retention_dlq_days=_float(env, "HUB_RETENTION_DLQ_DAYS", defaults.retention_dlq_days),
            retention_notify_days=_float(
                env, "HUB_RETENTION_NOTIFY_DAYS", defaults.retention_notify_days
            ),
            retention_quarantine_days=_float(
                env, "HUB_RETENTION_QUARANTINE_DAYS", defaults.retention_quarantine_days
            ),
            upkeep_interval_s=_float(env, "HUB_UPKEEP_INTERVAL", defaults.upkeep_interval_s),
            kafka_controller_port=_int(
                env, "HUB_KAFKA_CONTROLLER_PORT", defaults.kafka_controller_port
            ),
            stack_start_timeout_s=_float(
                env, "HUB_STACK_START_TIMEOUT", defaults.stack_start_timeout_s
            ),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Fail at start, naming the variable, rather than deep inside a client library."""
        host_port(self.kafka_bootstrap.split(",")[0], "HUB_KAFKA_BOOTSTRAP")
        host_port(self.kafka_sasl_bootstrap.split(",")[0], "HUB_KAFKA_SASL_BOOTSTRAP")
        DatabaseTarget.parse(self.database_url)
        for variable, port in (
            ("HUB_API_PORT", self.api_port),
            ("HUB_ALERTMANAGER_PORT", self.alertmanager_port),
            ("HUB_NOTIFY_PORT", self.notify_port),
        ):
            if not 0 < port < 65536:
                raise SettingsError(f"{variable}={port}: not a TCP port")
        if self.kafka_username and not self.kafka_password:
            raise SettingsError("HUB_KAFKA_USERNAME is set: HUB_KAFKA_PASSWORD is needed too")
        if self.smtp_url and urlsplit(self.smtp_url).scheme not in ("smtp", "smtps"):
            raise SettingsError(
                f"HUB_SMTP_URL={self.smtp_url!r}: smtp://[user:password@]host[:port] "
                "(STARTTLS when offered) or smtps://..."
            )
        if self.kafka_brokers not in (1, 3):
            raise SettingsError(
                f"HUB_KAFKA_BROKERS={self.kafka_brokers}: 1, or 3 for a replicated cluster"
            )
        if self.replication_factor < 1:
            raise SettingsError(f"HUB_REPLICATION_FACTOR={self.replication_factor}: at least 1")
        if self.partitions < 1:
            raise SettingsError(f"HUB_PARTITIONS={self.partitions}: needs at least 1")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", self.app_id):
            raise SettingsError(f"HUB_APP_ID={self.app_id!r}: letters, digits, '.', '_', '-'")
        if self.device_byte_rate < 1024:
            raise SettingsError(
                f"HUB_DEVICE_BYTE_RATE={self.device_byte_rate}: at least 1024 bytes a second"
            )
        if self.batch_max < 1:
            raise SettingsError(f"HUB_BATCH_MAX={self.batch_max}: needs at least 1")
        for name, value in (
            ("HUB_IDLE_TIMEOUT", self.idle_timeout_s),
            ("HUB_TICK_INTERVAL", self.tick_interval_s),
            ("HUB_REGISTRY_REFRESH", self.registry_refresh_s),
            ("HUB_RETENTION_RAW_DAYS", self.retention_raw_days),
            ("HUB_RETENTION_HOURLY_DAYS", self.retention_hourly_days),
            ("HUB_RETENTION_KPI_DAYS", self.retention_kpi_days),
            ("HUB_RETENTION_ALERT_DAYS", self.retention_alert_days),
            ("HUB_UPKEEP_INTERVAL", self.upkeep_interval_s),
            ("HUB_NOTIFY_ESCALATE_AFTER", self.notify_escalate_after_s),
            ("HUB_RETENTION_DLQ_DAYS", self.retention_dlq_days),
            ("HUB_RETENTION_NOTIFY_DAYS", self.retention_notify_days),
            ("HUB_RETENTION_QUARANTINE_DAYS", self.retention_quarantine_days),
            ("HUB_NOTIFY_INCIDENT_PER_HOUR", self.notify_incident_per_hour),
        ):
            if not value > 0:
                raise SettingsError(f"{name}={value}: must be positive")
        if not 6 <= self.session_timeout_s <= 300:
            # The broker's group.min/max.session.timeout.ms (6 s, 5 min) refuse anything else.
            raise SettingsError(
                f"HUB_SESSION_TIMEOUT={self.session_timeout_s:g}: between 6 and 300 seconds"
            )
        if not 0 <= self.clock_tolerance_s <= 300:
            raise SettingsError(
                f"HUB_CLOCK_TOLERANCE={self.clock_tolerance_s:g}: between 0 and 300 seconds (the "
                "clock-skew limit)"
            )
        if self.max_poll_interval_s < self.session_timeout_s:
            raise SettingsError(
                f"HUB_MAX_POLL_INTERVAL={self.max_poll_interval_s:g}: at least the session "
                f"timeout (HUB_SESSION_TIMEOUT={self.session_timeout_s:g})"
            )
        if self.notify_incident_burst < 1:
            raise SettingsError(
                f"HUB_NOTIFY_INCIDENT_BURST={self.notify_incident_burst}: at least 1 (the first "
                "incident of a burst is always delivered)"
            )
        # A repeat may carry any ts its device likes, up to the clock-skew limit ahead: the
        # horizon must outlast the window of the latest-dated copy, its lateness and that limit.
        future_s = MAX_FUTURE_MS / 1000
        if self.allowed_lateness_s < 0 or self.dedup_horizon_s < (
            self.allowed_lateness_s + 60 + future_s
        ):
            raise SettingsError(
                f"HUB_DEDUP_HORIZON={self.dedup_horizon_s:g} must cover a window and its allowed "
                f"lateness (HUB_ALLOWED_LATENESS={self.allowed_lateness_s:g}) plus 60 s and the "
                f"{future_s:g} s a record may be dated ahead: at least "
                f"{self.allowed_lateness_s + 60 + future_s:g}"
            )

    @property
    def database(self) -> DatabaseTarget:
        return DatabaseTarget.parse(self.database_url)

    @property
    def deploy_dir(self) -> Path:
        return self.project_root / "deploy"
