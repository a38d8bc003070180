"""The hub's murmur2 is Kafka's: the partition it names for a site is where every client's
default partitioner puts the site's records."""

from __future__ import annotations

import random

from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from hub.partitioning import murmur2, partition_of


def test_it_hashes_as_the_kafka_client_does() -> None:
    rng = random.Random(7)
    keys = [b"", b"a", b"ab", b"abc", b"GJ-BUK-0001", "전남-0001".encode()]
    keys += [rng.randbytes(rng.randrange(0, 40)) for _ in range(2_000)]
    assert [murmur2(k) for k in keys] == [aiokafka_murmur2(k) for k in keys]


# Kafka's own cases (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.testMurmur2),
# as the signed ints Java prints.
JAVA_CASES = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_it_gives_the_java_clients_values() -> None:
    for key, signed in JAVA_CASES.items():
        assert murmur2(key) == signed & 0xFFFFFFFF, key
        assert partition_of(key, 12) == (signed & 0x7FFFFFFF) % 12
