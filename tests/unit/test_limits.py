"""The one size budget (shared.platform.limits): its derived limits agree, the largest
case a window may submit fits every event and record it grows into, and intake names
the limit a form breaks."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, UnknownError

from services.intake.domain import size_errors
from shared.contracts.events import Applicant, StepAssigned
from shared.contracts.identity import make_resident_id
from shared.contracts.topology import (
    DLQ_CONSUMER,
    DLQ_ERROR,
    DLQ_FAILED_AT,
    DLQ_ORIGINAL_HEADERS,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
)
from shared.messaging.outbox import unpublishable
from shared.messaging.signing import BATCH_LEAVES
from shared.messaging.testing import signer_for
from shared.platform.limits import (
    HEADERS_ROOM,
    Limits,
    LimitsError,
    form_size,
)
from shared.platform.settings import Settings
from tests.support.builders import sealed

pytestmark = pytest.mark.unit

LIMITS = Limits.of(Settings())


def largest_form(limits: Limits = LIMITS) -> dict[str, Any]:
    """A form exactly at the form limit, in two fields at most half of it each, of
    characters that grow when escaped (quotes) or take 3 bytes (CJK)."""
    form: dict[str, Any] = {"education": "college", "a": "", "b": ""}
    room = limits.form - form_size(form)
    half = room // 2
    form["a"] = '"' * (half // 2)  # each serialised as \"
    form["b"] = "张" * ((room - 2 * (half // 2)) // 3)
    form["b"] += "x" * (limits.form - form_size(form))
    assert form_size(form) == limits.form
    return form


def test_the_limits_derive_from_the_one_setting_and_leave_room_for_each_other() -> None:
    assert LIMITS.record == Settings().max_record_bytes == 1 << 20
    assert LIMITS.form_field * 2 <= LIMITS.form < LIMITS.event < LIMITS.record
    assert LIMITS.form < LIMITS.body < LIMITS.record
    assert Limits.from_record(4 << 20).body > LIMITS.body
    with pytest.raises(LimitsError, match="no room"):
        Limits.from_record(32 * 1024)


def test_a_topic_taking_smaller_records_is_refused_with_the_fix() -> None:
    LIMITS.check_topic("cases.accepted", LIMITS.record)
    LIMITS.check_topic("cases.accepted", 1048588)  # the broker's own default
    with pytest.raises(LimitsError) as refused:
        LIMITS.check_topic("cases.accepted", 500_000)
    message = str(refused.value)
    assert "cases.accepted" in message
    assert "500000" in message
    assert str(LIMITS.record) in message
    assert "max.message.bytes" in message


def test_the_largest_case_fits_its_largest_event_and_record(tmp_path: Path) -> None:
    """A StepAssigned carries the applicant and the form again: with the longest name and
    a form at the limit it stays within the event limit, and its headers (a batch
    signature) plus a dead letter's headers stay within the room left for them."""
    applicant = Applicant(
        kind="natural",
        name="张" * 200,
        id_number=make_resident_id("110105", date(1988, 8, 8), 21),
        phone="13800138000",
    )
    case = uuid4()
    task = StepAssigned(
        case_id=case,
        correlation_id=case,
        causation_id=uuid4(),
        producer="router",
        step_index=9,
        department="social_security" * 4,
        action="benefit_claim" * 4,
        item_code="X" * 80,
        applicant=sealed(applicant, case),
        community_code="110105001001",
        form=largest_form(),
        review=True,
        follows_department="hr_registration" * 4,
        due_by=datetime(2027, 1, 1, tzinfo=UTC),
    )
    value = task.to_json()
    assert len(value) <= LIMITS.event
    signer = signer_for(tmp_path, "router")
    signed = signer.batch_headers([value] * BATCH_LEAVES)
    own = [*signed[-1], ("event_type", "StepAssigned"), ("content-type", "application/json")]
    dead_letter = [
        (DLQ_REASON, "handler_error"),
        (DLQ_ERROR, "e" * 2000),
        (DLQ_ORIGINAL_TOPIC, "dept.social_security.tasks"),
        (DLQ_ORIGINAL_PARTITION, "2147483647"),
        (DLQ_ORIGINAL_OFFSET, str(2**63 - 1)),
        (DLQ_ORIGINAL_HEADERS, json.dumps(dict(own))),
        (DLQ_CONSUMER, "social_security"),
        (DLQ_FAILED_AT, datetime.now(UTC).isoformat()),
    ]
    headers = sum(len(k) + len(v.encode()) + 16 for k, v in [*own, *dead_letter])
    assert headers + 2 * len(str(case)) + 128 <= HEADERS_ROOM
    assert len(value) + headers <= LIMITS.record


def test_intake_names_the_form_limit_and_each_field_over_its_own() -> None:
    assert size_errors(largest_form(), LIMITS) == []
    over = largest_form()
    over["b"] += "x"
    errors = size_errors(over, LIMITS)
    assert [loc for loc, _, _ in errors] == [("body", "form")]
    assert f"over the limit of {LIMITS.form} bytes" in errors[0][1]
    field = {"notes": "x" * LIMITS.form_field}
    errors = size_errors(field, LIMITS)
    assert [loc for loc, _, _ in errors] == [("body", "form", "notes")]
    assert f"over the limit of {LIMITS.form_field} bytes" in errors[0][1]


def test_the_relay_gives_up_only_on_what_a_retry_cannot_cure() -> None:
    assert unpublishable(MessageSizeTooLargeError())
    assert unpublishable(UnknownError())  # how aiokafka reports INVALID_RECORD
    assert not unpublishable(KafkaTimeoutError())
    assert not unpublishable(OSError())
