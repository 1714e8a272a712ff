"""The producers' key partitioner must place keys exactly as the Java client does."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from shared.messaging.kafka import key_partitioner, murmur2

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("key", "java"),
    [
        # Kafka's own test vectors (UtilsTest.testMurmur2), as the Java int they give.
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_the_java_client(key: bytes, java: int) -> None:
    assert murmur2(key) == java & 0xFFFFFFFF


def test_murmur2_matches_aiokafka_for_every_tail_length() -> None:
    rng = random.Random(7)
    for length in range(0, 70):
        for _ in range(30):
            data = rng.randbytes(length)
            assert murmur2(data) == aiokafka_murmur2(data) & 0xFFFFFFFF, data


def test_a_key_always_lands_in_the_same_partition() -> None:
    partitions = [0, 1, 2, 3]
    key = b"0b6f0d4e-8a51-4a5e-9d8e-7c1f3b2a9e10"
    first = key_partitioner(key, partitions, [])
    assert all(key_partitioner(key, partitions, [3]) == first for _ in range(20))
    assert first == (aiokafka_murmur2(key) & 0x7FFFFFFF) % 4
    assert key_partitioner(None, partitions, [2]) == 2
    assert key_partitioner(None, partitions, []) in partitions
