"""Token roles and format with plain values."""

from __future__ import annotations

import pytest

from hub.tokens import Principal, TokenError, digest, new_token, parse_role, split


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("operator", ("operator", "")),
        ("partner:gwangju", ("partner", "gwangju")),
        ("partner:jeonnam", ("partner", "jeonnam")),
        ("company:Nuri Vision", ("company", "Nuri Vision")),
    ],
)
def test_the_three_roles_parse(text: str, expected: tuple[str, str]) -> None:
    assert parse_role(text) == expected


@pytest.mark.parametrize(
    "text", ["", "admin", "operator:all", "partner", "partner:Seoul!", "company:", "company: "]
)
def test_anything_else_is_refused_naming_the_forms(text: str) -> None:
    with pytest.raises(TokenError, match="operator, partner:<region>"):
        parse_role(text)


def test_a_new_token_splits_into_its_id_and_a_secret_only_its_digest_matches() -> None:
    token_id, token = new_token()
    parts = split(token)
    assert parts is not None
    assert parts[0] == token_id
    assert digest(parts[1]) != digest(split(new_token()[1])[1])  # type: ignore[index]
    assert split(token + "x") is None
    assert split("hub_" + token_id) is None


def test_a_principal_says_its_scope() -> None:
    partner = Principal("jn", "partner", "jeonnam")
    assert (partner.region, partner.company, partner.label) == ("jeonnam", None, "partner:jeonnam")
    company = Principal("a", "company", "Company A")
    assert (company.region, company.company) == (None, "Company A")
    assert Principal("op", "operator").label == "operator"
