"""Where Kafka's default partitioner puts a keyed record, without a Kafka client.

The hub checks that a record arrived on its site's partition (a device that hashes keys some other
way would split a site's windows over two workers). The hash is Java's
``org.apache.kafka.common.utils.Utils.murmur2``; aiokafka has it too, but importing it loads the
whole client, which the pure record path must not (``make lint``'s import contract).
"""

from __future__ import annotations

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` as Kafka's Java client computes it (as an unsigned 32-bit int)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length % 4
    if tail:
        if tail >= 3:
            h ^= data[whole + 2] << 16
        if tail >= 2:
            h ^= data[whole + 1] << 8
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner chooses for ``key`` (Utils.toPositive)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
