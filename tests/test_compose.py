"""docker-compose.yml describes the same stack (read, not run: no Docker engine here): valid by
the Compose Specification's JSON schema, every hub command it runs exists, the registry loaded
before the hub's processes, each long-running service restarted and health-checked."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

# check-jsonschema ships a copy of the Compose Specification's schema (read as data: its command
# line wants a newer click than faust-streaming allows).
COMPOSE_SCHEMA = "check_jsonschema/builtin_schemas/vendor/compose-spec.json"


@pytest.fixture(scope="module")
def compose(project_root: Path) -> dict[str, Any]:
    loaded = yaml.safe_load((project_root / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def ports(service: dict[str, Any]) -> set[str]:
    return {str(p) for p in service.get("ports", [])}


def compose_validator() -> jsonschema.protocols.Validator:
    path = importlib.metadata.distribution("check-jsonschema").locate_file(COMPOSE_SCHEMA)
    schema = json.loads(Path(str(path)).read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def test_the_file_is_valid_by_the_compose_specification(compose: dict[str, Any]) -> None:
    validator = compose_validator()
    assert [e.message for e in validator.iter_errors(compose)] == []
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["depends_on"]["registry"]["condition"] = "service_done"
    assert list(validator.iter_errors(broken)), "the schema let a wrong condition through"


def test_each_hub_command_exists_in_the_image(compose: dict[str, Any], project_root: Path) -> None:
    """The image installs the project (Dockerfile): its console scripts, with these arguments."""
    scripts = tomllib.loads((project_root / "pyproject.toml").read_text())["project"]["scripts"]
    built = {name: s for name, s in compose["services"].items() if "build" in s}
    assert set(built) == {
        "tls",
        "kafka-setup",
        "registry",
        "worker",
        "api",
        "notifier",
        "kafka-jeonnam-setup",
        "worker-jeonnam",
    }
    for name, service in built.items():
        program, *args = service["command"]
        assert program in scripts, (name, program)
        words = [a for a in args if not a.startswith("-")]
        shown = subprocess.run(
            [sys.executable, "-m", "hub", *words, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert shown.returncode == 0, (name, shown.stderr)


def test_the_registry_is_loaded_before_any_hub_process(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["registry"]["command"] == ["hub", "registry", "load"]
    for name in ("worker", "api", "notifier"):
        depends = services[name]["depends_on"]
        assert depends["registry"] == {"condition": "service_completed_successfully"}, name
        assert depends["kafka"] == {"condition": "service_healthy"}, name
        # Their logins and grants exist before they start.
        assert depends["kafka-setup"] == {"condition": "service_completed_successfully"}, name


def test_long_running_services_restart_and_report_their_health(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name in ("registry", "tls", "kafka-setup", "kafka-jeonnam-setup"):  # one-shot set-up
            assert service["restart"] == "no"
            continue
        assert service.get("restart") == "unless-stopped", name
        if name != "grafana":
            assert "test" in service.get("healthcheck", {}), name


def test_hub_processes_serve_http_to_the_network_and_grafana_is_closed(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in ("worker", "api", "notifier"):
        assert services[name]["environment"]["HUB_BIND_HOST"] == "0.0.0.0"  # noqa: S104
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    scrape = yaml.safe_load(
        (
            Path(__file__).resolve().parent.parent / "deploy/prometheus/prometheus.compose.yml"
        ).read_text()
    )
    targets = {
        t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    assert {"worker:6066", "api:8000", "notifier:9096"} <= targets
    assert scrape["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093"
    ]


def test_services_are_the_stack_plus_the_hubs_processes(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "tls",
        "kafka",
        "kafka-setup",
        "timescaledb",
        "alertmanager",
        "prometheus",
        "grafana",
        "registry",
        "worker",
        "api",
        "notifier",
        # the federation profile
        "kafka-jeonnam",
        "kafka-jeonnam-setup",
        "worker-jeonnam",
        "mirrormaker",
    }
    images = {name: s.get("image", "") for name, s in compose["services"].items()}
    assert images["kafka"].startswith("apache/kafka:4.1")
    assert images["timescaledb"].startswith("timescale/timescaledb:")
    assert images["timescaledb"].endswith("-pg15")


def test_host_ports_match_the_contract(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "127.0.0.1:9092:9092" in ports(services["kafka"])
    assert "127.0.0.1:5433:5432" in ports(services["timescaledb"])
    assert "127.0.0.1:9090:9090" in ports(services["prometheus"])
    assert "127.0.0.1:8000:8000" in ports(services["api"])
    assert "127.0.0.1:3000:3000" in ports(services["grafana"])


def test_kafka_is_kraft_with_a_host_listener(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "HOST://127.0.0.1:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_kafka_has_no_anonymous_principal_and_tls_for_devices(compose: dict[str, Any]) -> None:
    """As in the local stack: every listener authenticates; devices and partners over TLS with
    the certificate the tls service makes; the hub's services with logins of their own."""
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    protocols = dict(
        pair.split(":") for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert protocols == {
        "HOST": "SASL_PLAINTEXT",
        "HUB": "SASL_PLAINTEXT",
        "DEVICES": "SASL_SSL",
        "CONTROLLER": "SASL_PLAINTEXT",
    }
    assert "DEVICES://127.0.0.1:9093" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "ANONYMOUS" not in env["KAFKA_SUPER_USERS"]
    assert env["KAFKA_SUPER_USERS"] == "User:hub-broker;User:hub-admin"
    assert env["KAFKA_LISTENER_NAME_DEVICES_SSL_KEYSTORE_LOCATION"] == "/etc/kafka/tls/kafka.pem"
    assert "hub-tls:/etc/kafka/tls:ro" in kafka["volumes"]
    # The apache/kafka image maps '.' to '_', '_' to '__' and '-' to '___'.
    jaas = env["KAFKA_LISTENER_NAME_DEVICES_SCRAM___SHA___512_SASL_JAAS_CONFIG"]
    assert "ScramLoginModule" in jaas
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    for service, user in (("worker", "hub-worker"), ("api", "hub-api"), ("notifier", "hub-notify")):
        assert compose["services"][service]["environment"]["HUB_KAFKA_USERNAME"] == user
    assert "9093:9093" in ports(kafka)


@pytest.mark.parametrize("service", ["registry", "worker", "api", "notifier"])
def test_hub_processes_are_configured_by_hub_variables(
    compose: dict[str, Any], service: str
) -> None:
    env = compose["services"][service]["environment"]
    assert env["HUB_KAFKA_BOOTSTRAP"] == "kafka:19092"
    assert env["HUB_DATABASE_URL"] == "postgresql://hub:hub@timescaledb:5432/hub"
    assert env["HUB_API_PORT"] == "8000"
    depends = compose["services"][service]["depends_on"]
    assert depends["timescaledb"]["condition"] == "service_healthy"


def test_mounted_provisioning_exists(compose: dict[str, Any], project_root: Path) -> None:
    for service in ("prometheus", "grafana", "alertmanager", "timescaledb"):
        for volume in compose["services"][service]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):  # a bind mount (not a named volume)
                assert (project_root / source).is_dir(), f"{service} mounts missing {source}"
    assert (project_root / "deploy/prometheus/prometheus.compose.yml").is_file()
    datasources = yaml.safe_load(
        (project_root / "deploy/grafana/provisioning/datasources/hub.yml").read_text()
    )
    assert {d["type"] for d in datasources["datasources"]} == {
        "prometheus",
        "grafana-postgresql-datasource",
    }
    # The management view reads as Grafana's read-only login, never as the database owner.
    timescale = next(d for d in datasources["datasources"] if d["uid"] == "hub-timescaledb")
    assert timescale["user"] == "grafana"
    assert timescale["secureJsonData"]["password"] == "${GRAFANA_DB_PASSWORD}"


def test_the_federation_profile_runs_the_region_and_the_link_as_the_local_stack_does(
    compose: dict[str, Any], project_root: Path
) -> None:
    """South Jeolla's cluster, its hub (its region only, a group of its own, the same
    database) and MirrorMaker 2 only with `--profile federation`, MirrorMaker configured as
    `hub stack up` configures it but for the services' addresses and logins."""
    from tooling.stack.federation import flow_properties

    services = compose["services"]
    federated = {name for name, s in services.items() if "federation" in s.get("profiles", [])}
    assert federated == {"kafka-jeonnam", "kafka-jeonnam-setup", "worker-jeonnam", "mirrormaker"}
    worker = services["worker-jeonnam"]["environment"]
    assert (worker["HUB_REGIONS"], worker["HUB_APP_ID"]) == ("jeonnam", "testbed-hub-jeonnam")
    assert worker["HUB_KAFKA_BOOTSTRAP"] == "kafka-jeonnam:19092"
    assert worker["HUB_DATABASE_URL"] == services["worker"]["environment"]["HUB_DATABASE_URL"]
    assert "127.0.0.1:29092:9092" in ports(services["kafka-jeonnam"])

    def flow(text: str) -> dict[str, str]:
        pairs = (line.split(" = ", 1) for line in text.splitlines() if " = " in line)
        return {
            k: v
            for k, v in pairs
            if not k.startswith(("config.providers", "clusters"))
            and k.split(".", 1)[-1] not in ("bootstrap.servers", "security.protocol")
            and not k.endswith(("sasl.mechanism", "sasl.jaas.config"))
        }

    shipped = (project_root / "deploy/mirrormaker/mm2.compose.properties").read_text()
    assert flow(shipped) == flow("\n".join(flow_properties()))
