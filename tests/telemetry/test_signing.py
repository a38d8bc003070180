"""The record signature against the standard library's HMAC, for keys of every length class."""

from __future__ import annotations

import hmac
import random

import pytest

from hub import signing


@pytest.mark.parametrize("key_bytes", [0, 1, 32, 63, 64, 65, 200])
def test_the_signature_is_the_standard_hmac_sha256(key_bytes: int) -> None:
    rng = random.Random(key_bytes)
    key = rng.randbytes(key_bytes)
    for size in (0, 1, 285, 4096):
        value = rng.randbytes(size)
        expected = hmac.digest(key, value, "sha256")
        assert signing.mac(key, value) == expected
        assert signing.signature(key, value) == b"v1=" + expected.hex().encode()
        assert signing.verify(key, value, signing.signature(key, value))
        assert not signing.verify(key, value + b" ", signing.signature(key, value))


def test_a_prepared_key_is_not_changed_by_use() -> None:
    key = b"k" * 32
    first = signing.mac(key, b"a")
    signing.mac(key, b"b" * 1000)
    assert signing.mac(key, b"a") == first == hmac.digest(key, b"a", "sha256")
