"""What a consumer trusts: a record is acted on only when the topology's one writer of
its topic signed it, with a key of that writer that the key registry says was valid when
the event occurred; a re-drive is honoured only when an operator's signed
``DeadLetterRedriven`` names the record.

Everything else is turned into a dead letter with a specific reason before any handler
sees it (and is claimed in the inbox under its topic/partition/offset, never under the
event id it claims, so a forgery cannot shadow the real event):

- ``missing_signature``: no signer or no signature header;
- ``wrong_signer``: signed by another service than the topic's writer (a valid record
  of one topic copied to another topic lands here too);
- ``unknown_signer``: the writer has no key in the registry;
- ``bad_signature``: no key of the writer valid at the event's ``occurred_at`` verifies
  it (a forged or altered record, another service's key, an expired key).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import structlog

from shared.contracts.events import DeadLetterRedriven, Event, EventDecodeError, parse_event
from shared.contracts.topology import (
    OPERATOR,
    REDRIVE_HEADER,
    REDRIVE_SIGNATURE_HEADER,
    writer,
)
from shared.messaging.kafka import header
from shared.messaging.signing import SIGNATURE_HEADER, SIGNER_HEADER, PublicKeys, Signer

if TYPE_CHECKING:
    from shared.messaging.consumer import Record

log = structlog.get_logger("trust")


class UntrustedRecordError(EventDecodeError):
    """A record that parses but that this consumer must not act on."""

    reason: ClassVar[str] = "untrusted"


class MissingSignatureError(UntrustedRecordError):
    reason = "missing_signature"


class WrongSignerError(UntrustedRecordError):
    reason = "wrong_signer"


class UnknownSignerError(UntrustedRecordError):
    reason = "unknown_signer"


class BadSignatureError(UntrustedRecordError):
    reason = "bad_signature"


def _text(raw: bytes | None) -> str | None:
    try:
        return raw.decode() if raw else None
    except UnicodeDecodeError:
        return None


Parsed = list[tuple["Record", Event | EventDecodeError]]


class Gate:
    """Checks records against the topology and the key registry (one per consumer)."""

    def __init__(self, keys: PublicKeys, topic_prefix: str) -> None:
        self._keys = keys
        self._prefix = topic_prefix
        self._writers: dict[str, str | None] = {}  # deployed topic -> its one writer

    def check(self, parsed: Parsed) -> Parsed:
        """``parsed`` with each event that may not be trusted replaced by its
        :class:`UntrustedRecordError`. The registry is re-read once when a signer is
        unknown or a signature fails and its file changed meanwhile (a key added)."""
        out = self._check(parsed)
        failed = any(isinstance(i, UnknownSignerError | BadSignatureError) for _, i in out)
        if failed and self._keys.refresh():
            out = self._check(parsed)
        for record, item in out:
            if isinstance(item, UntrustedRecordError):
                log.warning(
                    "untrusted record dead-lettered",
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    reason=item.reason,
                )
        return out

    def _check(self, parsed: Parsed) -> Parsed:
        return [
            (record, self.verdict(record.topic, record.headers, record.value or b"", item))
            for record, item in parsed
        ]

    def verdict(
        self,
        topic: str,
        headers: Sequence[tuple[str, bytes]],
        value: bytes,
        item: Event | EventDecodeError,
    ) -> Event | EventDecodeError:
        """``item`` when the record may be acted on, else why not."""
        if isinstance(item, EventDecodeError):
            return item
        logical = topic.removeprefix(self._prefix)
        signer = _text(header(headers, SIGNER_HEADER))
        signature = _text(header(headers, SIGNATURE_HEADER))
        if not signer or not signature:
            return MissingSignatureError(f"{logical}: record is not signed")
        expected = self._writers.get(topic, "")
        if expected == "":
            expected = self._writers[topic] = writer(logical)
        if signer != expected:
            return WrongSignerError(f"{logical} is written by {expected}, not by {signer}")
        if not self._keys.knows(signer):
            return UnknownSignerError(f"the key registry has no key of {signer}")
        if not self._keys.verify(signer, value, signature, item.occurred_at):
            return BadSignatureError(
                f"no key of {signer} valid at {item.occurred_at.isoformat()} verifies it"
            )
        return item

    def redrive_proven(
        self, topic: str, headers: Sequence[tuple[str, bytes]], event: Event
    ) -> bool:
        """Whether the record's redrive header carries an operator's ``DeadLetterRedriven``
        signed with a registry key of ``operator`` valid when it occurred, naming this
        event on this topic. A bare or unproven header counts for nothing."""
        raw = header(headers, REDRIVE_HEADER)
        signature = _text(header(headers, REDRIVE_SIGNATURE_HEADER))
        if not raw or not signature:
            return False
        try:
            act = parse_event(raw)
        except EventDecodeError:
            return False
        proven = (
            isinstance(act, DeadLetterRedriven)
            and act.redriven_event_id == event.event_id
            and act.original_topic == topic.removeprefix(self._prefix)
            and self._keys.verify(OPERATOR, raw, signature, act.occurred_at)
        )
        if not proven:
            log.warning("redrive header not proven; treated as a redelivery", topic=topic)
        return proven


def redrive_headers(operator: Signer, act: DeadLetterRedriven) -> list[tuple[str, bytes]]:
    """The headers that release a re-driven record: the exact bytes of the operator's
    ``act`` and its signature (what :meth:`Gate.redrive_proven` checks)."""
    value = act.to_json()
    return [(REDRIVE_HEADER, value), (REDRIVE_SIGNATURE_HEADER, operator.sign(value).encode())]
