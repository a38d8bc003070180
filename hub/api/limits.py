"""Request bodies are small and read only for callers with a valid token.

FastAPI reads a request's body before it resolves the route's dependencies (the bearer token
among them): without this guard anyone could make the API read and parse megabytes. Here, a
request that carries a body is answered 401 before a byte of it is read unless its token is
valid (the sign-in call, whose body *is* the token, excepted), and 413 when it is larger than
``MAX_BODY_BYTES``, whether it says so in Content-Length or streams it chunked.
"""

from __future__ import annotations

import json
from typing import Any, Final

import asyncpg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.auth import CHALLENGE, COOKIE
from hub.tokens import authenticate

# An application over a few hundred sites, its devices listed, fits.
MAX_BODY_BYTES: Final = 256 * 1024
# Takes its token in the body (the web page's sign-in): it may be read without one.
OPEN_WITH_BODY: Final = frozenset({"/api/v1/session"})


class BodyGuard:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            authorised = scope["path"] in OPEN_WITH_BODY or await self._authorised(scope, headers)
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            await _answer(send, 503, f"the database did not answer ({type(error).__name__})")
            return
        if not authorised:
            await _answer(
                send, 401, "a valid bearer token is required (issued by `hub access add-token`)"
            )
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _answer(send, 413, f"the request body is over {self.max_bytes} bytes")
            return
        # Authorised: read the body here, at most one byte past the limit, and hand it on whole.
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await _answer(send, 413, f"the request body is over {self.max_bytes} bytes")
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _authorised(self, scope: Scope, headers: dict[str, str]) -> bool:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else _cookie(headers.get("cookie", ""))
        if not token:
            return False
        app: Any = scope["app"]
        async with app.state.pool.acquire(timeout=10) as conn:
            return await authenticate(conn, token) is not None


def _cookie(header: str) -> str:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return ""


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers += [(k.lower().encode(), v.encode()) for k, v in CHALLENGE.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
