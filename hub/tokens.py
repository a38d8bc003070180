"""Bearer tokens of the management API: issued by ``hub access add-token``, stored hashed.

A token reads ``hub_<id>_<secret>``. The id finds its row; the secret (256 random bits) is checked
against the stored SHA-256 with a constant-time comparison. A slow password hash buys nothing for a
secret nobody chose: there is no dictionary to guess from.

Roles: ``operator`` sees everything; ``partner:<region>`` its region's sites, alerts and overview
rows, and the scorecards of every demonstration there over its region's sites;
``company:<company>`` its demonstrations' scorecards, sites, devices, rejections and alerts;
``procurement`` every scorecard, KPI result and comparison, and changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from hub import audit
from hub.db import Connection
from hub.errors import HubError
from hub.registry.model import REGIONS
from hub.topics import REGION_CODE

TOKEN = re.compile(r"hub_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class TokenError(HubError):
    """A role, name or token `hub access` refuses; says which and why."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from, and what they may see."""

    name: str
    role: str  # operator, partner, company or procurement
    scope: str = ""  # the partner's region, or the company

    @property
    def region(self) -> str | None:
        return self.scope if self.role == "partner" else None

    @property
    def company(self) -> str | None:
        return self.scope if self.role == "company" else None

    @property
    def label(self) -> str:
        return f"{self.role}:{self.scope}" if self.scope else self.role


def parse_role(text: str) -> tuple[str, str]:
    """``operator``, ``partner:<region>``, ``company:<company>`` or ``procurement`` as (role,
    scope)."""
    role, _, scope = text.partition(":")
    if role in ("operator", "procurement") and not scope:
        return role, ""
    if role == "partner" and REGION_CODE.match(scope):
        return role, scope
    if role == "company" and scope.strip():
        return role, scope.strip()
    raise TokenError(
        f"role {text!r}: expected operator, partner:<region> (e.g. {' or '.join(REGIONS)}), "
        "company:<company> or procurement"
    )


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_token() -> tuple[str, str]:
    """A fresh (token id, token)."""
    token_id = secrets.token_hex(8)
    return token_id, f"hub_{token_id}_{secrets.token_urlsafe(32)}"


def split(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    match = TOKEN.fullmatch(token)
    return (match[1], match[2]) if match else None


async def add_token(conn: Connection, role_text: str, name: str, actor: str = "hub") -> str:
    """Issue a token for ``name`` with that role; returns the token (shown once)."""
    role, scope = parse_role(role_text)
    if role == "partner" and not await conn.fetchval(
        "SELECT true FROM regions WHERE code = $1", scope
    ):
        known = [r["code"] for r in await conn.fetch("SELECT code FROM regions ORDER BY code")]
        raise TokenError(
            f"region {scope!r} is not a region of the hub (hub regions add); known: "
            f"{', '.join(known)}"
        )
    if not NAME.fullmatch(name):
        raise TokenError(f"name {name!r}: letters, digits, '.', '_' or '-', at most 64")
    if role == "company":
        rows = await conn.fetch("SELECT DISTINCT company FROM demonstrations")
        known = [r["company"] for r in rows]
        if scope not in known:
            raise TokenError(
                f"company {scope!r} has no demonstration in the registry; "
                f"known: {', '.join(sorted(known)) or 'none (load the registry first)'}"
            )
    token_id, token = new_token()
    secret = token.removeprefix(f"hub_{token_id}_")
    inserted = await conn.fetchval(
        "INSERT INTO api_tokens (token_id, name, role, scope, secret_sha256) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING RETURNING token_id",
        token_id,
        name,
        role,
        scope,
        digest(secret),
    )
    if inserted is None:
        raise TokenError(f"a token named {name!r} exists (hub access revoke-token {name} first)")
    await audit.record(conn, actor, "token.add", name, None, {"role": role_text})
    return token


async def revoke_token(conn: Connection, name: str, actor: str = "hub") -> bool:
    """Delete the token named ``name``; False if there was none."""
    deleted = await conn.fetchval(
        "DELETE FROM api_tokens WHERE name = $1 RETURNING role || ':' || scope", name
    )
    if deleted is not None:
        await audit.record(conn, actor, "token.revoke", name, {"role": deleted.rstrip(":")}, None)
    return deleted is not None


async def authenticate(conn: Connection, token: str) -> Principal | None:
    """The principal a token stands for, or None (malformed, unknown, revoked or wrong)."""
    parts = split(token)
    if parts is None:
        return None
    token_id, secret = parts
    row = await conn.fetchrow(
        "SELECT name, role, scope, secret_sha256 FROM api_tokens WHERE token_id = $1", token_id
    )
    if row is None or not hmac.compare_digest(bytes(row["secret_sha256"]), digest(secret)):
        return None
    return Principal(row["name"], row["role"], row["scope"])


async def list_tokens(conn: Connection) -> list[tuple[str, str, str]]:
    """(name, role, issued at) of every token, oldest first; never the secrets."""
    rows = await conn.fetch(
        "SELECT name, role, scope, created_at FROM api_tokens ORDER BY created_at, name"
    )
    return [
        (r["name"], Principal(r["name"], r["role"], r["scope"]).label, r["created_at"].isoformat())
        for r in rows
    ]
