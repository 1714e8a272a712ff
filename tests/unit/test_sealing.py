"""Sealed applicant fields and pseudonyms (shared.contracts.sealing), the router's
trimming of what departments get, and the erasure check of ``verify``."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from services.audit.verifier.erasures import erased_keys, sealed_after_erasure
from services.audit.verifier.log import LogRecord
from services.router.domain import for_departments
from shared.contracts.events import PersonErased
from shared.contracts.sealing import (
    CentreSecret,
    SealError,
    legacy_ref,
    new_data_key,
    open_sealed,
    seal,
)
from shared.department.keys import DataKeys
from tests.support.builders import (
    JOB_FORM,
    NOW,
    TEST_KEY,
    TEST_SECRET,
    accepted,
    applicant,
    fixed_key_id,
    sealed,
)

pytestmark = pytest.mark.unit


def test_a_sealed_value_opens_only_with_its_key_case_and_field() -> None:
    key, key_id, case = new_data_key(), uuid4(), uuid4()
    token = seal(key, key_id, case, "id_number", "11010519491231002X")
    assert "11010519491231002X" not in token
    assert open_sealed(key, key_id, case, "id_number", token) == "11010519491231002X"
    wrong: list[tuple[bytes | None, UUID, UUID, str]] = [
        (new_data_key(), key_id, case, "id_number"),  # another person's key
        (key, key_id, uuid4(), "id_number"),  # copied into another case
        (key, key_id, case, "phone"),  # or into another field
        (key, uuid4(), case, "id_number"),  # or claimed under another key id
        (None, key_id, case, "id_number"),  # the key erased
    ]
    for k, kid, c, f in wrong:
        with pytest.raises(SealError):
            open_sealed(k, kid, c, f, token)


def test_the_pseudonym_is_stable_keyed_and_says_nothing_by_itself() -> None:
    who = applicant(1)
    ref = TEST_SECRET.subject_ref(who.id_number)
    assert ref == TEST_SECRET.subject_ref(" " + who.id_number.lower() + " ")
    assert ref != CentreSecret(bytes(32)).subject_ref(who.id_number)  # another centre
    assert ref != TEST_SECRET.subject_ref(applicant(2).id_number)
    assert who.id_number not in ref
    assert ref != legacy_ref(who.id_number)


def test_a_wrapped_data_key_opens_only_with_the_centre_secret_for_its_ref() -> None:
    key = new_data_key()
    wrapped = TEST_SECRET.wrap("s1-" + "a" * 32, key)
    assert TEST_SECRET.unwrap("s1-" + "a" * 32, wrapped) == key
    with pytest.raises(SealError):
        TEST_SECRET.unwrap("s1-" + "b" * 32, wrapped)
    with pytest.raises(SealError):
        CentreSecret(bytes(32)).unwrap("s1-" + "a" * 32, wrapped)


def test_departments_get_the_name_and_id_sealed_never_the_phone() -> None:
    case = accepted("HR-JOB-REGISTRATION", applicant(3), JOB_FORM)
    task_applicant = for_departments(case.applicant)
    assert set(case.applicant.sealed) == {"name", "id_number", "phone"}
    assert set(task_applicant.sealed) == {"name", "id_number"}
    assert task_applicant.sealed["id_number"] == case.applicant.sealed["id_number"]  # copied
    keys = DataKeys(TEST_SECRET, 60)
    keys.remember(case.applicant.ref, fixed_key_id(case.applicant.ref), TEST_KEY)
    opened = keys.open(task_applicant, case.case_id)
    assert (opened.id_number, opened.name) == (applicant(3).id_number, applicant(3).name)
    forgotten = DataKeys(TEST_SECRET, 60)  # erased: the key is no longer to be had
    with pytest.raises(SealError):
        forgotten.open(task_applicant, case.case_id)


def _record(topic: str, value: bytes, offset: int = 0) -> LogRecord:
    return LogRecord(topic, 0, offset, value, "intake", "sig")


def _erasure(key_id: UUID, minutes: int) -> PersonErased:
    nil = UUID(int=0)
    return PersonErased(
        case_id=nil,
        correlation_id=nil,
        producer="intake",
        occurred_at=NOW + timedelta(minutes=minutes),
        subject_ref="s1-" + "c" * 32,
        key_ids=(key_id,),
        erased_by="admin-1",
        reason="request 1",
    )


def test_verify_finds_a_case_sealed_under_a_key_erased_before_it() -> None:
    before = accepted("HR-JOB-REGISTRATION", applicant(4), JOB_FORM)
    before = before.model_copy(update={"occurred_at": NOW})
    after = before.model_copy(update={"event_id": uuid4(), "occurred_at": NOW + timedelta(hours=1)})
    other = sealed(applicant(5), after.case_id)
    stranger = after.model_copy(update={"event_id": uuid4(), "applicant": other})
    erased = erased_keys(
        [_record("privacy.erasures", _erasure(before.applicant.key_id, 5).to_json())]
    )
    assert erased[before.applicant.key_id][0] == NOW + timedelta(minutes=5)
    records = [_record("cases.accepted", e.to_json(), i) for i, e in enumerate((before, after))]
    records.append(_record("cases.accepted", stranger.to_json(), 2))
    (found,) = sealed_after_erasure(records, erased)
    assert (found.kind, found.event_id, found.offset) == (
        "sealed_under_erased_key",
        after.event_id,
        1,
    )
    assert applicant(4).id_number not in found.detail
    # Erased after both: no violation (the person's old cases simply became unreadable).
    late = erased_keys(
        [_record("privacy.erasures", _erasure(before.applicant.key_id, 120).to_json())]
    )
    assert sealed_after_erasure(records, late) == []
