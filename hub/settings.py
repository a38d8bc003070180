"""One typed settings object, read from the environment once at start and passed in.

Every default is the local one from the contract; every field can be overridden by its
``HUB_*`` variable so the same code runs against the local stack, docker-compose or production.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
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


# A per-variable check: None if the value is fine, else what it must be.
Check = Callable[[Any], str | None]


def positive(value: float) -> str | None:
    return None if value > 0 else "must be positive"


def at_least(least: float, why: str = "") -> Check:
    def check(value: float) -> str | None:
        return None if value >= least else f"at least {least:g}{why}"

    return check


def tcp_port(value: int) -> str | None:
    return None if 0 < value < 65536 else "not a TCP port"


def setting(
    default: Any = MISSING,
    *,
    env: str,
    doc: str,
    shown: str | None = None,
    check: Check | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A setting, declared once: its field, its ``HUB_*`` variable, its default, what it is for
    (the README's table is made from these: ``settings_table``) and its check."""
    metadata = {"env": env, "doc": doc, "shown": shown, "check": check}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _home() -> Path:
    return PROJECT_ROOT / ".hub"


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = setting("127.0.0.1:9092", env="HUB_KAFKA_BOOTSTRAP", doc="Kafka")
    kafka_sasl_bootstrap: str = setting(
        "127.0.0.1:9093",
        env="HUB_KAFKA_SASL_BOOTSTRAP",
        doc="Kafka's SASL_SSL listener (devices, partners)",
    )
    # Who this process is to the broker (``hub.principals``): set by each command, not the
    # environment; its role picks its principal among the local stack's logins.
    kafka_role: KafkaRole = "admin"
    kafka_username: str = setting(
        "",
        env="HUB_KAFKA_USERNAME",
        shown="the local stack's login for the process's role",
        doc="the hub's own Kafka login (`hub-worker`, `hub-notify`, `hub-api`, `hub-admin`: "
        "`docs/security.md`)",
    )
    kafka_password: str = setting("", env="HUB_KAFKA_PASSWORD", doc="its password")
    kafka_ca: Path = setting(
        env="HUB_KAFKA_CA",
        factory=lambda: _home() / "tls" / "ca.pem",
        shown="`tls/ca.pem` in `HUB_HOME`",
        doc="the CA of the SASL_SSL listener's certificate (the local stack makes its own)",
    )
    database_url: str = setting(
        "postgresql://hub:hub@127.0.0.1:5433/hub", env="HUB_DATABASE_URL", doc="TimescaleDB"
    )
    api_port: int = setting(8000, env="HUB_API_PORT", doc="management API", check=tcp_port)
    prometheus_address: str = "127.0.0.1:9090"  # the local stack's (not configurable)
    alertmanager_port: int = setting(
        9095, env="HUB_ALERTMANAGER_PORT", doc="the local stack's Alertmanager", check=tcp_port
    )
    bind_host: str = setting(
        "127.0.0.1",
        env="HUB_BIND_HOST",
        doc="where workers, the API and the notifier serve HTTP (`0.0.0.0` in a container, so "
        "that Prometheus reaches them)",
    )
    notify_port: int = setting(
        9096,
        env="HUB_NOTIFY_PORT",
        doc="the notifier: Alertmanager's webhook (`POST /alertmanager`), `/metrics`, `/healthz`",
        check=tcp_port,
    )
    smtp_url: str = setting(
        "",
        env="HUB_SMTP_URL",
        doc="the notifier's mail server for e-mail receivers: `smtp://[user:password@]host"
        "[:port]` (STARTTLS when offered) or `smtps://...`",
    )
    notify_escalate_after_s: float = setting(
        1800.0,
        env="HUB_NOTIFY_ESCALATE_AFTER",
        doc="seconds a KPI breach may stay open and unacknowledged before operators are told again",
        check=positive,
    )
    # Loopback, link-local, unspecified and multicast addresses are refused by default: a
    # company's webhook must not make the hub call its own services (Prometheus on 127.0.0.1).
    notify_allow_networks: tuple[str, ...] = setting(
        (),
        env="HUB_NOTIFY_ALLOW_NETWORKS",
        doc="CIDRs of loopback/link-local addresses webhooks may reach anyway (refused by default)",
    )
    notify_incident_burst: int = setting(
        5,
        env="HUB_NOTIFY_INCIDENT_BURST",
        doc="incidents notified per device in a burst (then `HUB_NOTIFY_INCIDENT_PER_HOUR`; the "
        "next notice says how many were held back)",
        check=at_least(1, " (the first incident of a burst is always delivered)"),
    )
    notify_incident_per_hour: float = setting(
        30.0,
        env="HUB_NOTIFY_INCIDENT_PER_HOUR",
        doc="incidents notified per device an hour after the burst",
        check=positive,
    )
    home: Path = setting(
        env="HUB_HOME", factory=_home, shown="`.hub/` in the checkout", doc="local state"
    )
    project_root: Path = PROJECT_ROOT
    partitions: int = setting(
        12,
        env="HUB_PARTITIONS",
        doc="partitions of the topics the hub creates (the unit of parallelism across workers)",
        check=at_least(1),
    )
    kafka_brokers: int = setting(
        1,
        env="HUB_KAFKA_BROKERS",
        doc="brokers of the local stack: `3` runs a replicated KRaft cluster (replication "
        "factor 3, `min.insync.replicas` 2)",
        check=lambda n: None if n in (1, 3) else "1, or 3 for a replicated cluster",
    )
    replication_factor: int = setting(
        1,
        env="HUB_REPLICATION_FACTOR",
        shown="brokers, up to 3",
        doc="copies of each topic the hub creates",
        check=at_least(1),
    )
    app_id: str = setting(
        "testbed-hub",
        env="HUB_APP_ID",
        doc="consumer group and state topics (another id is an independent hub; the benchmark "
        "runs its own)",
        check=lambda v: (
            None
            if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", v)
            else "letters, digits, '.', '_', '-'"
        ),
    )
    worker_web_port: int = setting(
        6066, env="HUB_WORKER_WEB_PORT", doc="worker N serves `/metrics` on this port + N"
    )
    batch_max: int = setting(
        5000,
        env="HUB_BATCH_MAX",
        doc="records per fetch, handed over a partition at a time",
        check=at_least(1),
    )
    fetch_min_bytes: int = setting(
        65536,
        env="HUB_FETCH_MIN_BYTES",
        doc="bytes the broker gathers for a worker's fetch (up to `HUB_FETCH_MAX_WAIT`): fewer, "
        "fuller batches below full load; 1 answers at once",
        check=at_least(1),
    )
    fetch_max_wait_s: float = setting(
        0.1,
        env="HUB_FETCH_MAX_WAIT",
        doc="seconds the broker may hold a worker's fetch for `HUB_FETCH_MIN_BYTES`: the most it "
        "adds to a record's way through the hub",
        check=at_least(0),
    )
    allowed_lateness_s: float = setting(
        120.0,
        env="HUB_ALLOWED_LATENESS",
        doc="seconds a record may trail its partition's event time",
        check=at_least(0),
    )
    dedup_horizon_s: float = setting(
        600.0,
        env="HUB_DEDUP_HORIZON",
        doc="seconds (by arrival) a repeated (`device_id`, `event_id`) is recognised, whatever "
        "`ts` the repeat carries; at least the lateness + 60 s + the 300 s a record may be "
        "dated ahead",
    )
    idle_timeout_s: float = setting(
        30.0,
        env="HUB_IDLE_TIMEOUT",
        doc="seconds without records after which a partition's event time follows the clock",
        check=positive,
    )
    clock_tolerance_s: float = setting(
        5.0,
        env="HUB_CLOCK_TOLERANCE",
        doc="seconds ahead of its arrival at the broker a record may move its partition's "
        "event time (a fast device clock cannot close others' windows)",
        check=lambda v: (
            None if 0 <= v <= 300 else "between 0 and 300 seconds (the clock-skew limit)"
        ),
    )
    tick_interval_s: float = setting(
        5.0,
        env="HUB_TICK_INTERVAL",
        doc="seconds between a worker's checks of its idle partitions",
        check=positive,
    )
    registry_refresh_s: float = setting(
        5.0,
        env="HUB_REGISTRY_REFRESH",
        doc="seconds between a worker's reads of the registry (a device it does not know yet "
        "makes it read at once)",
        check=positive,
    )
    session_timeout_s: float = setting(
        30.0,
        env="HUB_SESSION_TIMEOUT",
        doc="seconds before a silent (crashed) worker's partitions go to the others",
        # The broker's group.min/max.session.timeout.ms (6 s, 5 min) refuse anything else.
        check=lambda v: None if 6 <= v <= 300 else "between 6 and 300 seconds",
    )
    max_poll_interval_s: float = setting(
        1000.0,
        env="HUB_MAX_POLL_INTERVAL",
        doc="seconds a worker may spend on one batch (its database write included) before the "
        "group moves its partitions; fenced writes keep a late one from writing",
    )
    device_byte_rate: int = setting(
        64 * 1024,
        env="HUB_DEVICE_BYTE_RATE",
        doc="bytes a second `hub access add-device` lets a device produce (a Kafka quota)",
        check=at_least(1024, " bytes a second"),
    )
    # Upkeep (run by `hub api`, or `hub upkeep` from cron): retention in days per table.
    retention_raw_days: float = setting(
        14.0,
        env="HUB_RETENTION_RAW_DAYS",
        doc="days of 1-minute aggregates kept",
        check=positive,
    )
    retention_hourly_days: float = setting(
        400.0,
        env="HUB_RETENTION_HOURLY_DAYS",
        doc="days of hourly aggregates kept",
        check=positive,
    )
    retention_kpi_days: float = setting(
        400.0, env="HUB_RETENTION_KPI_DAYS", doc="days of KPI results kept", check=positive
    )
    retention_alert_days: float = setting(
        400.0, env="HUB_RETENTION_ALERT_DAYS", doc="days of alerts kept", check=positive
    )
    retention_dlq_days: float = setting(
        30.0,
        env="HUB_RETENTION_DLQ_DAYS",
        doc="days the DLQ topic keeps rejected records (and `rejections` their rows)",
        check=positive,
    )
    retention_notify_days: float = setting(
        30.0,
        env="HUB_RETENTION_NOTIFY_DAYS",
        doc="days the notifier's outbox keeps notices, delivered or not",
        check=positive,
    )
    retention_quarantine_days: float = setting(
        30.0,
        env="HUB_RETENTION_QUARANTINE_DAYS",
        doc="days the sink's quarantine keeps rows the database refused",
        check=positive,
    )
    upkeep_interval_s: float = setting(
        300.0,
        env="HUB_UPKEEP_INTERVAL",
        doc="seconds between upkeep runs (retention, roll-ups) in `hub api`",
        check=positive,
    )
    kafka_controller_port: int = setting(
        9094, env="HUB_KAFKA_CONTROLLER_PORT", doc="the local stack's KRaft controller"
    )
    regions: str = setting(
        "",
        env="HUB_REGIONS",
        shown="every region",
        doc="the regions whose sites this hub processes, comma-separated (a regional hub of a "
        "federation: `docs/federation.md`); a record of another region's site is refused as "
        "`site_mismatch`, naming the region",
        check=lambda v: next(
            (
                f"{code!r} is not a region code (lower-case letters and digits)"
                for code in v.split(",")
                if code.strip() and not re.fullmatch(r"[a-z][a-z0-9]{1,31}", code.strip())
            ),
            None,
        ),
    )
    federation: int = setting(
        0,
        env="HUB_FEDERATION",
        doc="`1`: the local stack also runs South Jeolla's own Kafka cluster and MirrorMaker 2 "
        "linking it to this one (`docs/federation.md`)",
        check=lambda v: None if v in (0, 1) else "0, or 1 for the federated local stack",
    )
    mirrormaker_metrics_port: int = setting(
        9097,
        env="HUB_MIRRORMAKER_METRICS_PORT",
        doc="the federated local stack's MirrorMaker 2: its metrics for Prometheus",
        check=tcp_port,
    )
    stack_start_timeout_s: float = setting(
        90.0,
        env="HUB_STACK_START_TIMEOUT",
        doc="seconds `hub stack up` waits for each service",
        check=positive,
    )

    @property
    def processed_regions(self) -> frozenset[str]:
        """The regions whose sites this hub processes; empty: every region."""
        return frozenset(code.strip() for code in self.regions.split(",") if code.strip())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            variable = f.metadata.get("env")
            raw = env.get(variable) if variable else None
            if raw and variable:
                values[f.name] = _PARSERS[str(f.type)](raw, variable)
        # Defaults that follow other settings.
        if "kafka_ca" not in values and "home" in values:
            values["kafka_ca"] = values["home"] / "tls" / "ca.pem"
        if "replication_factor" not in values:
            values["replication_factor"] = min(3, max(1, values.get("kafka_brokers", 1)))
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Fail at start, naming the variable, rather than deep inside a client library."""
        for f in fields(self):
            check = f.metadata.get("check")
            value = getattr(self, f.name)
            problem = check(value) if check is not None else None
            if problem:
                shown = f"{value:g}" if isinstance(value, float) else str(value)
                raise SettingsError(f"{f.metadata['env']}={shown}: {problem}")
        host_port(self.kafka_bootstrap.split(",")[0], "HUB_KAFKA_BOOTSTRAP")
        host_port(self.kafka_sasl_bootstrap.split(",")[0], "HUB_KAFKA_SASL_BOOTSTRAP")
        DatabaseTarget.parse(self.database_url)
        if self.kafka_username and not self.kafka_password:
            raise SettingsError("HUB_KAFKA_USERNAME is set: HUB_KAFKA_PASSWORD is needed too")
        if self.smtp_url and urlsplit(self.smtp_url).scheme not in ("smtp", "smtps"):
            raise SettingsError(
                f"HUB_SMTP_URL={self.smtp_url!r}: smtp://[user:password@]host[:port] "
                "(STARTTLS when offered) or smtps://..."
            )
        if self.max_poll_interval_s < self.session_timeout_s:
            raise SettingsError(
                f"HUB_MAX_POLL_INTERVAL={self.max_poll_interval_s:g}: at least the session "
                f"timeout (HUB_SESSION_TIMEOUT={self.session_timeout_s:g})"
            )
        # A repeat may carry any ts its device likes, up to the clock-skew limit ahead: the
        # horizon must outlast the window of the latest-dated copy, its lateness and that limit.
        future_s = MAX_FUTURE_MS / 1000
        if self.dedup_horizon_s < self.allowed_lateness_s + 60 + future_s:
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


def _text(raw: str, variable: str) -> str:
    return raw


def _path(raw: str, variable: str) -> Path:
    return Path(raw).resolve()


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "str": _text,
    "int": lambda raw, variable: _int({variable: raw}, variable, 0),
    "float": lambda raw, variable: _float({variable: raw}, variable, 0.0),
    "Path": _path,
    "tuple[str, ...]": lambda raw, variable: _networks({variable: raw}, variable),
}


def settings_table() -> str:
    """The README's table of settings, made from their declarations."""
    lines = ["| Variable | Default | What |", "|---|---|---|"]
    defaults = Settings()
    for f in fields(Settings):
        if "env" not in f.metadata:
            continue
        shown = f.metadata["shown"]
        if shown is None:
            value = getattr(defaults, f.name)
            shown = (
                "none"
                if value in ("", ())
                else f"`{value:g}`"
                if isinstance(value, float)
                else f"`{value}`"
            )
        lines.append(f"| `{f.metadata['env']}` | {shown} | {f.metadata['doc']} |")
    return "\n".join(lines) + "\n"
