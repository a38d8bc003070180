"""How a device proves a record is its own: an HMAC-SHA256 of the record's value under the
device's key, in the record header ``hub-signature``.

``hub access add-device`` issues the key (with the device's broker login); the hub keeps it in the
database and checks every record against the key of the device the record names. A credential
issued to one device therefore cannot publish as another: the broker admits the login, but the
record fails at intake as ``unauthenticated``. Revoking the device ends both.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import Any, Final

HEADER: Final = "hub-signature"
VERSION: Final = b"v1="
KEY_BYTES: Final = 32


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


# HMAC-SHA256 (RFC 2104) with the key's inner and outer hashes prepared once per key and copied
# per record: the one-shot ``hmac.digest`` sets the key up and looks SHA-256 up in OpenSSL every
# time, about twice the cost (docs/performance.md, "Choices measured");
# ``tests/telemetry/test_signing.py`` holds it to ``hmac.digest``.
_BLOCK: Final = 64
_INNER: Final = bytes(x ^ 0x36 for x in range(256))
_OUTER: Final = bytes(x ^ 0x5C for x in range(256))
_prepared: dict[bytes, tuple[Any, Any]] = {}
_MAX_KEYS: Final = 100_000  # once per device key; the registry holds a few thousand


def _prepare(key: bytes) -> tuple[Any, Any]:
    pads = _prepared.get(key)
    if pads is None:
        block = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
        pads = (hashlib.sha256(block.translate(_INNER)), hashlib.sha256(block.translate(_OUTER)))
        if len(_prepared) >= _MAX_KEYS:
            _prepared.clear()
        _prepared[key] = pads
    return pads


def mac(key: bytes, value: bytes) -> bytes:
    """HMAC-SHA256 of ``value`` under ``key``."""
    inner, outer = _prepare(key)
    inner = inner.copy()
    inner.update(value)
    outer = outer.copy()
    outer.update(inner.digest())
    return bytes(outer.digest())


def signature(key: bytes, value: bytes) -> bytes:
    """The header value a device sends with ``value``: ``v1=`` and the HMAC in hex."""
    return VERSION + mac(key, value).hex().encode()


def headers(key: bytes, value: bytes) -> list[tuple[str, bytes]]:
    """The record headers that sign ``value`` (what a producer passes as ``headers``)."""
    return [(HEADER, signature(key, value))]


def presented(record_headers: Sequence[tuple[str, bytes]] | None) -> bytes | None:
    """The signature a record carries, if any (the first ``hub-signature`` header)."""
    for name, value in record_headers or ():
        if name == HEADER:
            return value
    return None


def verify(key: bytes, value: bytes, presented_signature: bytes) -> bool:
    """Whether ``presented_signature`` is ``signature(key, value)`` (compared in constant time);
    ``mac`` written out: this runs once a record."""
    inner, outer = _prepare(key)
    inner = inner.copy()
    inner.update(value)
    outer = outer.copy()
    outer.update(inner.digest())
    return hmac.compare_digest(VERSION + outer.hexdigest().encode(), presented_signature)


# -- the hub's own mark on a record `hub dlq replay` sends again ----------------------------------

REPLAYED_FROM: Final = "hub-replayed-from"  # topic/partition/offset of the first rejection
REPLAY_MARK: Final = "hub-replay-mark"  # v1=<original append ms>.<HMAC-SHA256 hex>


def _replay_input(origin: str, appended_ms: int, value: bytes) -> bytes:
    return f"{origin}|{appended_ms}|".encode() + hashlib.sha256(value).digest()


def replay_headers(
    key: bytes, origin: str, appended_ms: int, value: bytes
) -> list[tuple[str, bytes]]:
    """What `hub dlq replay` adds to a record it sends again: its origin, and a mark under the
    hub's key binding the origin, the record's original append time and its bytes."""
    mark = (
        VERSION
        + f"{appended_ms}.".encode()
        + mac(key, _replay_input(origin, appended_ms, value)).hex().encode()
    )
    return [(REPLAYED_FROM, origin.encode()), (REPLAY_MARK, mark)]


def trusted_replay(
    key: bytes | None, record_headers: Sequence[tuple[str, bytes]] | None, value: bytes
) -> tuple[str, int] | None:
    """The (origin, original append time) of a record the hub replayed, when its mark verifies
    under the hub's key; None otherwise (a device's own ``hub-*`` headers carry no weight)."""
    if key is None or not record_headers or len(record_headers) < 2:
        return None
    origin = mark = None
    for name, header in record_headers:
        if name == REPLAYED_FROM:
            origin = header
        elif name == REPLAY_MARK:
            mark = header
    if origin is None or mark is None or not mark.startswith(VERSION):
        return None
    stamp, _, presented_mac = mark[len(VERSION) :].partition(b".")
    try:
        appended_ms = int(stamp)
        text = origin.decode()
    except ValueError:
        return None
    expected = mac(key, _replay_input(text, appended_ms, value)).hex().encode()
    if not hmac.compare_digest(expected, presented_mac):
        return None
    return text, appended_ms
