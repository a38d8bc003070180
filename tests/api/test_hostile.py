"""Hostile requests against the real API: schemathesis generates requests from the OpenAPI
document (valid and invalid) and checks every response against it, never a 5xx; then injection
payloads in every parameter leave the database as it was."""

from __future__ import annotations

import urllib.parse
from typing import Any

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
)

from tests.api.conftest import ApiServer, Scratch, get, post


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_every_operation_answers_as_documented(api: ApiServer, mode: Any) -> None:
    """Generated requests per operation (valid ones, then invalid ones), each response checked:
    no 5xx, a documented status, content type, headers and body schema."""
    schema = schemathesis.openapi.from_url(f"{api.base}/openapi.json")
    auth = {"Authorization": f"Bearer {api.token}"}
    operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
    assert len(operations) >= 7

    exercised = []
    for operation in operations:
        # Nor positive_data_acceptance for an application: whether one is acceptable depends on
        # the registry (its sites exist, its ids are new), which no schema can say; every refusal
        # is a 422 naming the problems, still checked against the document.
        # Nor for a time range: whether one is acceptable depends on `from` and `to` together
        # (at most so many days), which no schema can say either; its refusal is a 422 naming
        # `from`, checked in test_history.
        excluded = [negative_data_rejection]
        ranged = any(p.name == "from" for p in operation.query)
        if operation.label == "POST /api/v1/demonstrations" or ranged:
            excluded.append(positive_data_acceptance)

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
        def answers(case: Any) -> None:
            # Not negative_data_rejection: a query string carries only text, so an "invalid"
            # case (a number, null or a list where a string is expected) often reaches the API as
            # a valid one. What it would test (unknown, repeated, empty filters answer 422) is
            # asserted directly in test_api.test_malformed_parameters_answer_422_with_json.
            case.call_and_validate(headers=auth, excluded_checks=excluded)  # noqa: B023

        try:
            answers()
        except Unsatisfiable:
            # No invalid request exists for an operation without parameters or body.
            assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
            assert not operation.path_parameters, operation.label
            assert not operation.query, operation.label
            assert operation.body is None or not len(operation.body), operation.label
            continue
        exercised.append(operation.label)
    assert len(exercised) >= 5, exercised


PAYLOADS = [
    "' OR '1'='1",
    "'; DROP TABLE sites; --",
    '" OR ""="',
    "1; SELECT pg_sleep(5)",
    "<script>alert(1)</script>",
    "../../../../etc/passwd",
    "%00",
    "${jndi:ldap://x/a}",
    "{{7*7}}",
    "DEMO-001' UNION SELECT token_id FROM api_tokens --",
    "\u202egnp.exe",
    "x" * 129,
]


async def table_counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        return {
            table: await conn.fetchval(f"SELECT count(*) FROM {table}")
            for table in ("sites", "devices", "demonstrations", "kpi_alerts", "api_tokens")
        }
    finally:
        await conn.close()


async def test_injection_in_every_parameter_is_answered_4xx_or_empty(
    scratch: Scratch, api: ApiServer
) -> None:
    before = await table_counts(scratch.url)
    for payload in PAYLOADS:
        q = urllib.parse.quote(payload, safe="")
        for path in (
            f"/api/v1/sites/{q}",
            f"/api/v1/demonstrations/{q}/scorecard",
            f"/api/v1/overview?region={q}",
            f"/api/v1/alerts?status={q}",
            f"/api/v1/alerts?demonstration_id={q}",
            f"/api/v1/alerts?site_id={q}",
            f"/api/v1/alerts?limit={q}",
        ):
            status, body = get(api, path)
            assert status in (200, 404, 422), (path, status, body)
            if status == 200:  # a filter that matched nothing
                assert body == [], (path, body)
        status, body = post(api, f"/api/v1/alerts/{q}/ack", b'{"by": "x", "note": ""}')
        assert status in (404, 422), (payload, status, body)
        status, body = post(api, "/api/v1/session", f'{{"token": "{payload}"}}'.encode())
        assert status in (401, 422), (payload, status, body)
        # The payload as the bearer token itself.
        assert get(api, "/api/v1/overview", token=payload.replace("\u202e", ""))[0] == 401
    assert await table_counts(scratch.url) == before


def raw_post(
    api: ApiServer, path: str, headers: dict[str, str], chunks: list[bytes]
) -> tuple[int, str]:
    """A POST whose body may be declared but never sent, or sent in chunks: the status line and
    body the server answers with (within 10 s)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        connection.putrequest("POST", path)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        for chunk in chunks:
            try:
                connection.send(chunk)
            except OSError:
                break  # the server answered and closed: what it said is read below
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_a_body_is_read_only_with_a_valid_token_and_only_up_to_256_kib(api: ApiServer) -> None:
    path = "/api/v1/alerts/nope/ack"
    json_type = {"content-type": "application/json"}
    # 10 MB announced, nothing sent: answered at once, nothing read.
    status, body = raw_post(api, path, {**json_type, "content-length": "10000000"}, [])
    assert (status, "bearer token" in body) == (401, True)
    valid = {**json_type, "authorization": f"Bearer {api.token}"}
    status, body = raw_post(api, path, {**valid, "content-length": "10000000"}, [])
    assert (status, "over 262144 bytes" in body) == (413, True)
    # Chunked, no length given: cut off once it passes the limit.
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    status, body = raw_post(api, path, {**valid, "transfer-encoding": "chunked"}, [chunk] * 6)
    assert (status, "over 262144 bytes" in body) == (413, True)
    # A small body with a valid token goes through to the route (an unknown alert: 404).
    ack = b'{"by": "ops", "note": ""}'
    status, _ = raw_post(api, path, {**valid, "content-length": str(len(ack))}, [ack])
    assert status == 404
