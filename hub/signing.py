"""How a device proves a record is its own: an HMAC-SHA256 of the record's value under the
device's key, in the record header ``hub-signature``.

``hub access add-device`` issues the key (with the device's broker login); the hub keeps it in the
database and checks every record against the key of the device the record names. A credential
issued to one device therefore cannot publish as another: the broker admits the login, but the
record fails at intake as ``unauthenticated``. Revoking the device ends both.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from typing import Final

HEADER: Final = "hub-signature"
VERSION: Final = b"v1="
KEY_BYTES: Final = 32


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def signature(key: bytes, value: bytes) -> bytes:
    """The header value a device sends with ``value``: ``v1=`` and the HMAC in hex."""
    return VERSION + hmac.digest(key, value, "sha256").hex().encode()


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
    return hmac.compare_digest(signature(key, value), presented_signature)
