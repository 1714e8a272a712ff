"""How onedoor-audit verify shares a replay between processes (no broker needed)."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from services.audit.cli import main
from services.audit.verifier.shards import replay_shards, shard_count

pytestmark = pytest.mark.unit


def topics(**counts: int) -> list[TopicPartition]:
    return [TopicPartition(name, p) for name, n in counts.items() for p in range(n)]


@pytest.mark.parametrize(
    ("counts", "wanted", "expected"),
    [
        ({"cases.accepted": 6, "cases.routing": 6, "ops.redrives": 1}, 2, 2),
        ({"cases.accepted": 3, "cases.routing": 3}, 2, 2),  # one size: any count up to it
        ({"cases.accepted": 6, "cases.routing": 6}, 8, 6),
        ({"cases.accepted": 6, "dept.x.tasks": 12}, 4, 3),  # sizes differ: a divisor of both
        ({"cases.accepted": 6, "dept.x.tasks": 4}, 8, 2),
        ({"cases.accepted": 6, "dept.x.tasks": 5}, 8, 1),  # none but 1
        ({"cases.accepted": 6}, 1, 1),
        ({"ops.redrives": 1}, 8, 1),
        ({}, 8, 1),
    ],
)
def test_the_shard_count_divides_every_topic(
    counts: dict[str, int], wanted: int, expected: int
) -> None:
    assert shard_count(topics(**counts), wanted) == expected


def test_each_partition_is_read_by_exactly_one_process() -> None:
    partitions = topics(**{"cases.accepted": 6, "dept.x.tasks": 6, "ops.redrives": 1})
    shards = replay_shards(partitions, 3)
    assert sorted(tp for shard in shards for tp in shard) == sorted(partitions)
    # A case keyed into partition p of every topic is read by process p % 3 alone.
    for index, shard in enumerate(shards):
        assert {tp.partition % 3 for tp in shard} == {index}
    assert TopicPartition("ops.redrives", 0) in shards[0]


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_processes_must_be_a_positive_number(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["verify", "--processes", value])
    assert exit_.value.code == 2
    assert f"expected a whole number of at least 1, got {value!r}" in capsys.readouterr().err
