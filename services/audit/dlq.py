"""Dead-letter queues for operators: list what is parked, re-drive one record after a fix.

    onedoor-audit dlq list [--json]
    onedoor-audit dlq redrive DLQ_TOPIC PARTITION OFFSET --reason TEXT [--operator ID]

A re-drive first publishes a ``DeadLetterRedriven`` event signed with the operator's key
on ``ops.redrives``, so the audit log shows who re-drove what, when and why, then puts
the record's original bytes, key and headers back on its original topic with that
event's exact bytes and signature in the ``onedoor-redrive`` and
``onedoor-redrive-signature`` headers. The consumer that dead-lettered the record claims
it once more (its inbox remembers it was dead-lettered) only when that proof verifies
against the key registry's ``operator`` keys and names the record (its event id and
original topic); a header without it, and a plain redelivery, stay no-ops.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from shared.contracts.events import DeadLetterRedriven, EventDecodeError, parse_event
from shared.contracts.topology import (
    DLQ_CONSUMER,
    DLQ_ERROR,
    DLQ_FAILED_AT,
    DLQ_ORIGINAL_HEADERS,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    DLQ_SUFFIX,
    OPERATOR,
    OPS_REDRIVES,
    REDRIVE_HEADER,
    REDRIVE_SIGNATURE_HEADER,
)
from shared.messaging.kafka import make_producer, partitions_matching, read_to_end
from shared.messaging.signing import Signer
from shared.messaging.trust import redrive_headers
from shared.platform.settings import Settings

NIL = UUID(int=0)
REDRIVE_HEADERS = (REDRIVE_HEADER, REDRIVE_SIGNATURE_HEADER)


class RedriveError(RuntimeError):
    """The record cannot be re-driven; the message says why and what to do."""


def _number(text: str | None) -> int | None:
    """A partition or offset header as a number; None when absent or not a number."""
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class DeadLetter:
    """One record of a DLQ as it is: any value, any headers. What cannot be read from it
    is said in :attr:`problems`, never raised: an operator's tool survives any record."""

    topic: str  # logical DLQ topic
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def original(self) -> tuple[str, int, int]:
        """Where the record came from; -1 for a partition or offset not known."""
        h = self.headers
        partition = _number(h.get(DLQ_ORIGINAL_PARTITION))
        offset = _number(h.get(DLQ_ORIGINAL_OFFSET))
        return (
            h.get(DLQ_ORIGINAL_TOPIC, self.topic.removesuffix(DLQ_SUFFIX)),
            -1 if partition is None else partition,
            -1 if offset is None else offset,
        )

    def event(self) -> tuple[Any, str | None]:
        """The dead letter's value as an event, or None and what is wrong with it."""
        try:
            return parse_event(self.value), None
        except Exception as exc:  # noqa: BLE001 - a dead letter may hold anything
            return None, f"value is not an event: {str(exc)[:200]}"

    @property
    def problems(self) -> list[str]:
        """What is missing or malformed in this dead letter's headers."""
        found = []
        for name in (DLQ_ORIGINAL_PARTITION, DLQ_ORIGINAL_OFFSET):
            text = self.headers.get(name)
            if text is None:
                found.append(f"header {name} missing")
            elif _number(text) is None:
                found.append(f"header {name} is not a number: {text[:40]!r}")
        if DLQ_REASON not in self.headers:
            found.append(f"header {DLQ_REASON} missing")
        text = self.headers.get(DLQ_ORIGINAL_HEADERS)
        if text is not None:
            try:
                json.loads(text)
            except ValueError:
                found.append(f"header {DLQ_ORIGINAL_HEADERS} is not JSON")
        return found

    def summary(self, redriven: dict[tuple[str, int, int], str]) -> dict[str, Any]:
        event, wrong = self.event()
        event_type = None if event is None else event.event_type
        case = None if event is None else str(event.case_id)
        problems = [*self.problems, *([wrong] if wrong else [])]
        return {
            "dlq": f"{self.topic}/{self.partition}@{self.offset}",
            "original": "{}/{}@{}".format(*self.original),
            "reason": self.headers.get(DLQ_REASON),
            "error": self.headers.get(DLQ_ERROR, "")[:200],
            "consumer": self.headers.get(DLQ_CONSUMER),
            "failed_at": self.headers.get(DLQ_FAILED_AT),
            "event_type": event_type,
            "case_id": case,
            "redriven_by": redriven.get((self.topic, self.partition, self.offset)),
            "problems": problems,
        }


def _headers(raw: list[tuple[str, bytes]]) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in raw}


async def dead_letters(settings: Settings) -> list[DeadLetter]:
    prefix = re.escape(settings.topic_prefix)
    parts = await partitions_matching(settings, rf"^{prefix}.+\.dlq$")
    return [
        DeadLetter(
            r.topic.removeprefix(settings.topic_prefix),
            r.partition,
            r.offset,
            r.key,
            r.value or b"",
            _headers(r.headers),
        )
        for r in await read_to_end(settings, parts)
    ]


async def redrives(
    settings: Settings, junk: list[str] | None = None
) -> dict[tuple[str, int, int], str]:
    """Which DLQ records were re-driven already: (dlq topic, partition, offset) -> by whom.

    A record of ``ops.redrives`` that is not a ``DeadLetterRedriven`` event is skipped
    (and described in ``junk`` when given): it records no re-drive."""
    done: dict[tuple[str, int, int], str] = {}
    parts = await partitions_matching(settings, rf"^{re.escape(settings.topic(OPS_REDRIVES))}$")
    for r in await read_to_end(settings, parts):
        try:
            event = parse_event(r.value or b"")
        except Exception as exc:  # noqa: BLE001 - anyone may have written anything there
            if junk is not None:
                where = f"{OPS_REDRIVES}/{r.partition}@{r.offset}"
                junk.append(f"{where}: not an event ({str(exc)[:200]})")
            continue
        if not isinstance(event, DeadLetterRedriven):
            if junk is not None:
                junk.append(f"{OPS_REDRIVES}/{r.partition}@{r.offset}: a {event.event_type}")
        else:
            done[(event.dlq_topic, event.dlq_partition, event.dlq_offset)] = (
                f"{event.operator} at {event.occurred_at.isoformat()}: {event.reason}"
            )
    return done


def _original_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    try:
        stored = json.loads(letter.headers.get(DLQ_ORIGINAL_HEADERS, "{}"))
    except ValueError:
        stored = None
    if not isinstance(stored, dict) or not all(isinstance(v, str) for v in stored.values()):
        raise RedriveError(
            f"the dead letter's {DLQ_ORIGINAL_HEADERS} header is malformed: its original"
            " headers (its signature among them) cannot be restored"
        )
    out = []
    for key, value in stored.items():
        out.append((key, bytes.fromhex(value[4:]) if value.startswith("hex:") else value.encode()))
    return out


async def redrive(
    settings: Settings, topic: str, partition: int, offset: int, *, reason: str, operator: str
) -> DeadLetterRedriven:
    """Re-drive one dead letter (logical DLQ topic); return the recorded event."""
    letters = [
        d
        for d in await dead_letters(settings)
        if (d.topic, d.partition, d.offset) == (topic, partition, offset)
    ]
    if not letters:
        raise RedriveError(
            f"no dead letter at {topic}/{partition}@{offset}; `onedoor-audit dlq list` shows them"
        )
    letter = letters[0]
    done = await redrives(settings)
    where = (topic, partition, offset)
    if where in done:
        raise RedriveError(f"{topic}/{partition}@{offset} was re-driven already by {done[where]}")
    original_topic, original_partition, original_offset = letter.original
    try:
        parsed = parse_event(letter.value)
        case_id, event_id = parsed.case_id, parsed.event_id
    except EventDecodeError:
        case_id, event_id = NIL, None
    recorded = DeadLetterRedriven(
        case_id=case_id,
        correlation_id=case_id,
        producer=OPERATOR,
        dlq_topic=topic,
        dlq_partition=partition,
        dlq_offset=offset,
        original_topic=original_topic,
        original_partition=original_partition,
        original_offset=original_offset,
        redriven_event_id=event_id,
        operator=operator,
        reason=reason,
    )
    signer = Signer.load(settings.keys_dir, OPERATOR, key_file=settings.signing_key_file)
    value = recorded.to_json()
    producer = make_producer(settings)
    await producer.start()
    try:
        # The operator's act is on the log before the record it releases.
        await (
            await producer.send(
                settings.topic(OPS_REDRIVES),
                value,
                key=str(case_id).encode(),
                headers=[(k, v.encode()) for k, v in signer.headers(value)],
            )
        )
        await (
            await producer.send(
                settings.topic(original_topic),
                letter.value,
                key=letter.key,
                headers=[
                    *(h for h in _original_headers(letter) if h[0] not in REDRIVE_HEADERS),
                    # The proof consumers check: the operator's signed act, naming it.
                    *redrive_headers(signer, recorded),
                ],
            )
        )
    finally:
        await producer.stop()
    return recorded
