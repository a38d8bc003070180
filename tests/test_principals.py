"""What each of the hub's own principals may do (hub.principals), as plain values: the broker
enforces exactly these grants (tests/stack/test_trust.py shows it on the real one)."""

from __future__ import annotations

from hub import topics
from hub.principals import ROLES, service_grants
from hub.settings import Settings

WRITES = {"Write", "All", "Create", "AlterConfigs"}


def test_only_the_worker_writes_the_hubs_topics() -> None:
    writers = {
        role
        for role in ROLES
        for grant in service_grants(role, "testbed-hub")
        if grant.resource == "topic" and WRITES & set(grant.operations)
    }
    assert writers <= {"worker", "notify"}
    written_by_notify = {
        grant.name
        for grant in service_grants("notify", "testbed-hub")
        if "Write" in grant.operations or "All" in grant.operations
    }
    assert written_by_notify == set()  # it may create its topics, never write them


def test_the_api_asks_for_metadata_only_and_admin_is_the_super_user() -> None:
    assert service_grants("api", "testbed-hub") == []
    assert service_grants("admin", "testbed-hub") == []


def test_every_grant_names_a_topic_of_the_contract_or_of_its_own_hub() -> None:
    own = {*topics.hub_topics()}
    for role in ROLES:
        for grant in service_grants(role, "gj-hub"):
            if grant.prefixed:
                assert grant.name in ("partner.", "gj-hub"), grant
            elif grant.resource == "topic":
                assert grant.name in own, grant
            else:
                assert grant.name in ("gj-hub", "gj-hub.notifier"), grant


def test_a_login_comes_from_the_environment_before_the_local_stack() -> None:
    from hub.principals import login

    env = Settings.from_env({"HUB_KAFKA_USERNAME": "hub-worker", "HUB_KAFKA_PASSWORD": "s3cret"})
    found = login(env, "worker")
    assert found is not None
    assert (found.username, found.password) == ("hub-worker", "s3cret")
