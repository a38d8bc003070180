"""docker-compose.yml describes the same stack (read, not run: no Docker engine here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml


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


def test_services_are_the_stack_plus_worker_and_api(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "kafka",
        "timescaledb",
        "prometheus",
        "grafana",
        "worker",
        "api",
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
    assert "PLAINTEXT://127.0.0.1:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_kafka_has_the_scram_listener_and_acls_of_the_local_stack(
    compose: dict[str, Any],
) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    assert "SASL_PLAINTEXT://127.0.0.1:9093" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    # The apache/kafka image maps '.' to '_', '_' to '__' and '-' to '___'.
    jaas = env["KAFKA_LISTENER_NAME_SASL__PLAINTEXT_SCRAM___SHA___512_SASL_JAAS_CONFIG"]
    assert "ScramLoginModule" in jaas
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert "9093:9093" in ports(kafka)


@pytest.mark.parametrize("service", ["worker", "api"])
def test_hub_processes_are_configured_by_hub_variables(
    compose: dict[str, Any], service: str
) -> None:
    env = compose["services"][service]["environment"]
    assert env["HUB_KAFKA_BOOTSTRAP"] == "kafka:19092"
    assert env["HUB_DATABASE_URL"] == "postgresql://hub:hub@timescaledb:5432/hub"
    assert env["HUB_API_PORT"] == "8000"
    depends = compose["services"][service]["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["timescaledb"]["condition"] == "service_healthy"


def test_mounted_provisioning_exists(compose: dict[str, Any], project_root: Path) -> None:
    for service in ("prometheus", "grafana"):
        for volume in compose["services"][service]["volumes"]:
            source = volume.split(":")[0]
            assert (project_root / source).is_dir(), f"{service} mounts missing {source}"
    assert (project_root / "deploy/prometheus/prometheus.compose.yml").is_file()
    datasources = yaml.safe_load(
        (project_root / "deploy/grafana/provisioning/datasources/hub.yml").read_text()
    )
    assert {d["type"] for d in datasources["datasources"]} == {
        "prometheus",
        "grafana-postgresql-datasource",
    }
