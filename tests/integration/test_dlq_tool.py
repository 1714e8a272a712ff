"""``onedoor-audit dlq`` survives any record: junk on ops.redrives, a dead letter with a
malformed partition header, one whose value is not an event (issue 17)."""

from __future__ import annotations

import json

import pytest
from aiokafka import TopicPartition

from services.audit import cli, dlq
from shared.contracts.events import CaseClosed
from shared.contracts.topology import (
    CASES_ROUTING,
    DLQ_ORIGINAL_HEADERS,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    OPS_REDRIVES,
)
from shared.contracts.topology import dlq as dlq_of
from shared.messaging.kafka import make_producer, read_to_end
from shared.messaging.topics import ensure_topics
from shared.platform.settings import Settings
from tests.support import builders

pytestmark = pytest.mark.integration


async def _put(settings: Settings, topic: str, value: bytes | None, headers: dict[str, str]) -> int:
    producer = make_producer(settings)
    await producer.start()
    try:
        meta = await (
            await producer.send(
                settings.topic(topic),
                value,
                key=b"k",
                headers=[(k, v.encode()) for k, v in headers.items()],
                partition=0,
            )
        )
    finally:
        await producer.stop()
    return int(meta.offset)


async def test_dlq_list_and_redrive_survive_junk_and_malformed_letters(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    routing_dlq = dlq_of(CASES_ROUTING)
    await ensure_topics(settings, [CASES_ROUTING, routing_dlq, OPS_REDRIVES])
    for value in (b"\xff junk", b'{"not": "an event"}', None):
        await _put(settings, OPS_REDRIVES, value, {})
    case = builders.accepted("HR-JOB-REGISTRATION", builders.applicant(1), builders.JOB_FORM)
    closed = CaseClosed(
        case_id=case.case_id, correlation_id=case.case_id, producer="router", outcome="approved"
    )
    bad = await _put(
        settings,
        routing_dlq,
        b"\x00 not an event",
        {DLQ_REASON: "parse_error", DLQ_ORIGINAL_PARTITION: "zero", DLQ_ORIGINAL_HEADERS: "{"},
    )
    good = await _put(
        settings,
        routing_dlq,
        closed.to_json(),
        {
            DLQ_REASON: "handler_error",
            DLQ_ORIGINAL_TOPIC: CASES_ROUTING,
            DLQ_ORIGINAL_PARTITION: "1",
            DLQ_ORIGINAL_OFFSET: "7",
            DLQ_ORIGINAL_HEADERS: json.dumps({"event_type": "CaseClosed"}),
        },
    )

    junk: list[str] = []
    assert await dlq.redrives(settings, junk) == {}
    assert len(junk) == 3
    letters = {d.offset: d.summary({}) for d in await dlq.dead_letters(settings)}
    assert letters[bad]["original"] == f"{CASES_ROUTING}/-1@-1"
    assert letters[bad]["event_type"] is None
    problems = " | ".join(letters[bad]["problems"])
    assert f"{DLQ_ORIGINAL_PARTITION} is not a number" in problems
    assert f"{DLQ_ORIGINAL_OFFSET} missing" in problems
    assert "value is not an event" in problems
    assert letters[good]["event_type"] == "CaseClosed"
    assert letters[good]["problems"] == []

    # The CLI prints both, table and JSON, and names what it skipped.
    for as_json in (False, True):
        args = cli.parser().parse_args(["dlq", "list", *(["--json"] if as_json else [])])
        assert await cli.cmd_dlq(settings, args) == 0
    out = capsys.readouterr()
    assert f"skipped on {OPS_REDRIVES}" in out.err
    assert "is not a number" in out.out

    # A good letter is still re-driven; the malformed one is refused with a reason.
    recorded = await dlq.redrive(
        settings, routing_dlq, 0, good, reason="fixed in 1.3", operator="ops-7"
    )
    assert recorded.redriven_event_id == closed.event_id
    with pytest.raises(dlq.RedriveError, match="malformed"):
        await dlq.redrive(settings, routing_dlq, 0, bad, reason="try", operator="ops-7")
    again = cli.parser().parse_args(
        ["dlq", "redrive", routing_dlq, "0", str(good), "--reason", "again"]
    )
    assert await cli.cmd_dlq(settings, again) == 1  # re-driven already: said, not raised
    redriven = await read_to_end(
        settings,
        [
            TopicPartition(settings.topic(CASES_ROUTING), p)
            for p in range(settings.topic_partitions)
        ],
    )
    assert [r.value for r in redriven] == [closed.to_json()]
