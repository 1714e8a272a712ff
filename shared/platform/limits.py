"""One size budget, end to end (``ONEDOOR_MAX_RECORD_BYTES``).

Every size limit of the pipeline is derived here from that one setting, so they agree:

- ``record``: the largest record a service may publish (value, key, headers); the
  producers' ``max_request_size`` and the ``max.message.bytes`` of the topics the
  services create. A topic created earlier with less refuses the service's start.
- ``event``: the largest event value, leaving room for the record's headers (event type,
  the batch signature) and a dead letter's own headers (reason, error, origin).
- ``form``: the largest form of a request, serialised as the events carry it, leaving
  room for the largest event that carries the form again (``StepAssigned``: the
  applicant, the item, the step, the due date and the envelope).
- ``form_field``: the largest single form field (half the form).
- ``body``: intake's request body limit: the form plus room for the rest of a request
  (applicant, item, window) and its JSON spacing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from shared.platform.settings import Settings

HEADERS_ROOM = 16 * 1024
"""Headers of an event record (event type, signature with its Merkle path) and of a dead
letter (reason, error up to 2,000 characters, the original headers, origin)."""
ENVELOPE_ROOM = 16 * 1024
"""Everything but the form in the largest event that carries it (StepAssigned): the
applicant (name up to 200 characters), item, department, action, ids, timestamps."""
REQUEST_ROOM = 8 * 1024
"""Everything but the form in a request body, and its JSON spacing."""

_FORM = TypeAdapter(dict[str, Any])
_VALUE = TypeAdapter(Any)


class LimitsError(RuntimeError):
    """The size limits cannot agree (a topic accepts less than the services may emit)."""


@dataclass(frozen=True, slots=True)
class Limits:
    record: int
    event: int
    form: int
    form_field: int
    body: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls.from_record(settings.max_record_bytes)

    @classmethod
    def from_record(cls, record: int) -> Limits:
        event = record - HEADERS_ROOM
        form = event - ENVELOPE_ROOM
        limits = cls(record, event, form, form // 2, form + REQUEST_ROOM)
        if min(event, form) <= 0 or limits.body >= record:
            raise LimitsError(f"ONEDOOR_MAX_RECORD_BYTES={record} leaves no room for a form")
        return limits

    def check_topic(self, topic: str, max_message_bytes: int) -> None:
        """Refuse a topic that takes smaller records than the services may publish."""
        if max_message_bytes < self.record:
            raise LimitsError(
                f"topic {topic} accepts records of up to {max_message_bytes} bytes"
                f" (max.message.bytes), but ONEDOOR_MAX_RECORD_BYTES is {self.record}:"
                f" raise the topic's max.message.bytes to at least {self.record}"
                f" (kafka-configs --alter --entity-type topics --entity-name {topic}"
                f" --add-config max.message.bytes={self.record}) or lower the setting"
            )


def json_size(value: Any) -> int:
    """Bytes of ``value`` serialised as events serialise it (pydantic's JSON)."""
    return len(_VALUE.dump_json(value))


def form_size(form: dict[str, Any]) -> int:
    return len(_FORM.dump_json(form))
