"""What the API's routes share: a pooled connection, the caller, parameter types, and the
responses every route documents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer

from hub.api import models
from hub.api.auth import identify, presented
from hub.tokens import Principal

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": models.ErrorBody, "description": "unknown id"}
}
UNREADABLE_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": models.ErrorBody, "description": "a body that cannot be read (not UTF-8)"}
}
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": models.ErrorBody, "description": "no valid bearer token"},
    403: {"model": models.ErrorBody, "description": "not for this token's role"},
}
Id = Annotated[str, Path(min_length=1, max_length=128, pattern=models.NO_NUL)]
Filter = Annotated[str | None, Query(min_length=1, max_length=128, pattern=models.NO_NUL)]


async def connection(request: Request) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
    """One pooled connection per request (module level: FastAPI resolves it by name)."""
    async with request.app.state.pool.acquire(timeout=10) as conn:
        yield conn


Conn = Annotated[asyncpg.pool.PoolConnectionProxy, Depends(connection)]

# Documents the scheme in the OpenAPI document; the header is read by ``presented``, which also
# takes the web page's cookie.
BEARER = HTTPBearer(auto_error=False, description="a token from `hub access add-token`")


async def principal(
    request: Request, conn: Conn, _: Annotated[object, Depends(BEARER)] = None
) -> Principal:
    """The caller, from its bearer token (401 without a valid one)."""
    return await identify(conn, presented(request))


Who = Annotated[Principal, Depends(principal)]


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def only_known_query(request: Request) -> None:
    """A mistyped filter (``?regoin=``) answers 422 naming it, rather than everything unfiltered;
    so does a filter given twice (which one would count?)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.path.startswith("/api/"):
        return
    known = _query_names(route.dependant)
    expected = ", ".join(sorted(known)) or "none"
    errors = [
        {
            "loc": ["query", name],
            "msg": f"unknown query parameter; expected: {expected}",
            "type": "extra_forbidden",
        }
        for name in sorted(set(request.query_params) - known)
    ]
    errors += [
        {
            "loc": ["query", name],
            "msg": "given more than once; it takes one value",
            "type": "too_long",
        }
        for name in sorted(known)
        if len(request.query_params.getlist(name)) > 1
    ]
    if errors:
        raise RequestValidationError(errors)
