"""The documents partners read: JSON Schemas, the AsyncAPI description, the KPI catalog."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from hub.registry.model import AGGREGATIONS, OPS, WINDOWS
from hub.telemetry import Reason
from hub.topics import contract_topics

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def load(name: str) -> Any:
    text = (SCHEMAS / name).read_text()
    return yaml.safe_load(text) if name.endswith(".yaml") else json.loads(text)


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.schema.json")), ids=lambda p: p.name)
def test_every_json_schema_is_valid_2020_12(path: Path) -> None:
    schema = json.loads(path.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for example in schema.get("examples", []):
        assert validator.is_valid(example), list(validator.iter_errors(example))


def test_dlq_schema_has_the_contract_fields_and_reasons() -> None:
    schema = load("dlq-record-v1.schema.json")
    assert set(schema["required"]) == {
        "reason",
        "detail",
        "topic",
        "partition",
        "offset",
        "key",
        "value_b64",
        "received_at",
    }
    assert set(schema["properties"]["reason"]["enum"]) == {
        "malformed_json",
        "schema_violation",
        "unknown_device",
        "site_mismatch",
        "too_large",
        "clock_skew",
        "late",
        "unauthenticated",
        # The hub's own, documented in the schema (the contract allows further reasons).
        "undeclared_metric",
        "wrong_partition",
        "unprocessable",
        "not_active",
    }
    assert set(schema["properties"]["reason"]["enum"]) == {str(r) for r in Reason}


def expand(address: str, parameters: dict[str, Any]) -> set[str]:
    if "{region}" not in address:
        return {address}
    return {address.replace("{region}", r) for r in parameters["region"]["enum"]}


def test_asyncapi_describes_every_contract_topic() -> None:
    doc = load("asyncapi.yaml")
    assert doc["asyncapi"].startswith("3.")
    parameters = doc["components"]["parameters"]
    addresses: set[str] = set()
    for channel in doc["channels"].values():
        addresses |= expand(channel["address"], parameters)
    assert addresses == set(contract_topics())


def test_asyncapi_refs_resolve_and_every_channel_has_a_sender_and_a_receiver() -> None:
    doc = load("asyncapi.yaml")
    messages = doc["components"]["messages"]
    for message in messages.values():
        payload = message["payload"]["$ref"]
        assert (SCHEMAS / payload).is_file(), payload
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
    for name, channel in doc["channels"].items():
        for ref in channel["messages"].values():
            assert ref["$ref"].removeprefix("#/components/messages/") in messages
        actions = {
            op["action"]
            for op in doc["operations"].values()
            if op["channel"]["$ref"] == f"#/channels/{name}"
        }
        assert actions == {"send", "receive"}, name


def test_kpi_catalog_matches_what_the_registry_accepts() -> None:
    catalog = load("kpi-catalog.yaml")
    assert tuple(catalog["aggregations"]) == AGGREGATIONS
    assert tuple(catalog["ops"]) == OPS
    assert {str(k): v for k, v in catalog["windows"].items()} == WINDOWS
