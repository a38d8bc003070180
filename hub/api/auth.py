"""Who is asking: the bearer token of a request (header, or the page's cookie) as a Principal.

No token or a bad one answers 401. What a principal may see is decided per endpoint in
``hub.api.app``; data of someone else's region or company answers 404 (as if it did not exist) or,
for a whole endpoint a role has no business with, 403.
"""

from __future__ import annotations

from fastapi import HTTPException, Request

from hub.db import Connection
from hub.management.scope import (
    ALERT_ROLES,
    COMPARE_ROLES,
    DEMONSTRATION_ROLES,
    EVIDENCE_ROLES,
    OVERVIEW_ROLES,
)
from hub.tokens import Principal, authenticate

COOKIE = "hub_token"
__all__ = [
    "ALERT_ROLES",
    "COMPARE_ROLES",
    "DEMONSTRATION_ROLES",
    "EVIDENCE_ROLES",
    "OVERVIEW_ROLES",
]
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def presented(request: Request) -> str | None:
    """The token a request carries: ``Authorization: Bearer`` first, then the page's cookie."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE) or None


async def identify(conn: Connection, token: str | None) -> Principal:
    if not token:
        raise HTTPException(
            401, "a bearer token is required (issued by `hub access add-token`)", CHALLENGE
        )
    principal = await authenticate(conn, token)
    if principal is None:
        raise HTTPException(401, "the token is not valid (unknown, revoked or mistyped)", CHALLENGE)
    return principal


def forbid_unless(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise HTTPException(403, f"a {principal.label} token may not read this")
