"""Reads of personal data (PersonalDataAccessed): the rules of who may read and who must
say why, and what verify makes of recorded reads, on logs written by the real routing
rules and signed with real keys (the LogBuilder of test_audit_domain)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from services.audit.projection import digest, project
from services.audit.verifier.report import (
    ACCESS_BY_WRONG_ROLE,
    ACCESS_WITHOUT_REASON,
    UNKNOWN_CASE,
    WRONG_SIGNER,
)
from shared.contracts.access import Accessor, needs_reason, reason_problem, role_problem
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import PersonalDataAccessed
from shared.contracts.topology import ACCESS_AUDIT, ACCESS_INTAKE
from shared.messaging.access import access_event
from shared.messaging.keyring import generate
from shared.messaging.signing import PublicKeys
from shared.messaging.testing import signer_for
from tests.unit.test_audit_domain import LATER, T0, Keys, LogBuilder, assert_at, only

pytestmark = pytest.mark.unit

SIGNERS = ("intake", "router", "hr_registration", "social_security", "audit")
CLERK = Accessor("clerk-c01-w01", "clerk", "C01")
OTHER_CLERK = Accessor("clerk-c02-w01", "clerk", "C02")
AUDITOR = Accessor("auditor-1", "auditor")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("keys")
    for service in SIGNERS:
        # Valid before the first event of these logs (T0), as keys in service are.
        generate(folder, service, now=T0 - timedelta(days=30))
    return Keys({s: signer_for(folder, s) for s in SIGNERS}, PublicKeys.load(folder))


@pytest.fixture
def log(catalogue: Catalogue, keys: Keys) -> LogBuilder:
    return LogBuilder(catalogue, keys)


def read(
    log: LogBuilder,
    case_id: UUID,
    who: Accessor,
    *,
    topic: str = ACCESS_INTAKE,
    reason: str | None = None,
    signer: str | None = None,
) -> PersonalDataAccessed:
    """``who`` reads the case through the service that writes ``topic``."""
    service = "audit" if topic == ACCESS_AUDIT else "intake"
    event = access_event(
        service,
        who,
        case_id,
        fields=("status", "receipt_no"),
        reason=reason,
        channel="http",
        resource="GET /cases/{case_id}",
    ).model_copy(update={"occurred_at": log.tick()})
    log.publish(topic, event, signer=signer)
    return event


# --------------------------------------------------------------------------- the pure rules


def test_who_must_say_why() -> None:
    assert not needs_reason("clerk", "C01", "C01")  # a clerk's daily work
    assert not needs_reason("citizen", None, "C01")  # their own case
    assert needs_reason("clerk", "C02", "C01")
    assert needs_reason("clerk", None, "C01")
    for role in ("auditor", "admin", "operator", "department_officer"):
        assert needs_reason(role, None, "C01")


def test_what_a_reason_may_hold() -> None:
    assert reason_problem(None, required=False) is None
    assert reason_problem("complaint 2026-118", required=True) is None
    assert reason_problem("投诉复核 2026-118", required=True) is None
    missing = reason_problem("  ", required=True)
    assert missing is not None
    assert "Onedoor-Access-Reason" in missing
    assert "--reason" in missing
    assert reason_problem("ok", required=True) is not None  # too short to say anything
    assert reason_problem("x" * 501, required=False) is not None
    # The reader's words, never the person's numbers.
    assert "ID number" in (reason_problem("check 11010519491231002X", required=True) or "")
    assert "phone" in (reason_problem("called 13800138000 back", required=True) or "")


def test_who_each_service_shows_cases_to() -> None:
    assert role_problem("intake", "clerk", "C01", "C01") is None
    assert role_problem("intake", "auditor", None, "C01") is None
    assert role_problem("intake", "citizen", None, "C01") is None
    assert role_problem("audit", "admin", None, "C01") is None
    assert role_problem("audit", "clerk", "C01", "C01") is not None
    assert role_problem("intake", "department_officer", None, "C01") is not None
    assert "C02" in (role_problem("intake", "clerk", "C02", "C01") or "")
    assert role_problem("router", "auditor", None, "C01") is not None
    own = {"accessor": "citizen:C01-20261127-000001", "case_receipt": "C01-20261127-000001"}
    assert role_problem("intake", "citizen", None, "C01", **own) is None
    other = own | {"accessor": "citizen:C01-20261127-000002"}
    assert role_problem("intake", "citizen", None, "C01", **other) is not None
    assert role_problem("audit", "citizen", None, "C01", **own) is not None


def test_a_read_never_carries_the_id_number() -> None:
    event = access_event(
        "intake", AUDITOR, uuid4(), fields=("status",), reason=" why ", channel="cli", resource="x"
    )
    assert event.reason == "why"
    assert event.request_id  # one is made when the caller has none
    assert event.correlation_id == event.case_id
    assert "id_number" not in event.to_json().decode()


# --------------------------------------------------------------------------- verify


def test_reads_that_follow_the_rules_are_no_violation(log: LogBuilder) -> None:
    case = log.benefit_approved()
    read(log, case.case_id, CLERK)
    read(log, case.case_id, AUDITOR, reason="complaint 2026-118")
    read(log, case.case_id, AUDITOR, topic=ACCESS_AUDIT, reason="yearly sample")
    read(log, case.case_id, Accessor("admin-1", "admin"), topic=ACCESS_AUDIT, reason="spot check")
    assert log.verify().violations == []


def test_a_read_without_the_reason_its_role_owes(log: LogBuilder) -> None:
    case = log.benefit_approved()
    event = read(log, case.case_id, AUDITOR, topic=ACCESS_AUDIT)
    found = only(log.verify(), ACCESS_WITHOUT_REASON)
    assert_at(found, log.record_of(event), event)
    assert "auditor-1" in found.detail


def test_a_read_by_a_role_the_service_never_shows_cases_to(log: LogBuilder) -> None:
    case = log.benefit_approved()
    officer = Accessor("officer-ss", "department_officer")
    event = read(log, case.case_id, officer, reason="curious about it")
    found = only(log.verify(), ACCESS_BY_WRONG_ROLE)
    assert_at(found, log.record_of(event), event)
    assert "department_officer" in found.detail


def test_a_clerk_reading_another_centres_case(log: LogBuilder) -> None:
    case = log.benefit_approved()  # accepted at C01
    event = read(log, case.case_id, OTHER_CLERK, reason="asked by phone")
    found = only(log.verify(), ACCESS_BY_WRONG_ROLE)
    assert_at(found, log.record_of(event), event)
    assert "C02" in found.detail
    # Without a reason it owes one too: both are reported at the record.
    unexplained = read(log, case.case_id, OTHER_CLERK)
    kinds = sorted(v.kind for v in log.verify().violations if v.event_id == unexplained.event_id)
    assert kinds == [ACCESS_BY_WRONG_ROLE, ACCESS_WITHOUT_REASON]


def test_a_citizen_reads_only_their_own_case(log: LogBuilder) -> None:
    case = log.benefit_approved()
    own = read(log, case.case_id, Accessor(f"citizen:{case.receipt_no}", "citizen"))
    assert log.verify().violations == []
    stranger = read(log, case.case_id, Accessor("citizen:C01-20261127-999999", "citizen"))
    found = only(log.verify(), ACCESS_BY_WRONG_ROLE)
    assert_at(found, log.record_of(stranger), stranger)
    assert found.event_id != own.event_id


def test_a_read_recorded_by_another_signer_is_wrong_signer(log: LogBuilder) -> None:
    case = log.benefit_approved()
    by_router = read(log, case.case_id, CLERK, signer="router")
    found = only(log.verify(), WRONG_SIGNER)
    assert_at(found, log.record_of(by_router), by_router)


def test_a_read_on_the_other_services_access_topic_is_wrong_signer(log: LogBuilder) -> None:
    case = log.benefit_approved()
    event = access_event(
        "audit", AUDITOR, case.case_id, fields=("timeline",), reason="audit", channel="cli",
        resource="onedoor-audit history",
    )  # fmt: skip
    log.publish(ACCESS_INTAKE, event)  # the audit's read, on intake's topic
    found = only(log.verify(), WRONG_SIGNER)
    assert "only intake publishes on access.intake" in found.detail


def test_a_read_of_a_case_never_accepted(log: LogBuilder) -> None:
    event = read(log, uuid4(), AUDITOR, reason="complaint 2026-118")
    found = only(log.verify(), UNKNOWN_CASE)
    assert_at(found, log.record_of(event), event)


def test_reads_change_no_view_and_end_no_wait(log: LogBuilder) -> None:
    closed = log.benefit_approved()
    waiting = log.waiting_for_info()
    before = digest(project(log.events))
    read(log, closed.case_id, CLERK)
    read(log, waiting.case_id, AUDITOR, reason="complaint 2026-118")
    assert digest(project(log.events)) == before
    assert project(log.events)[waiting.case_id].status == "waiting_info"
    # Long past the promise: a case waiting for the applicant is still not overdue.
    assert log.verify(now=LATER + timedelta(days=400)).violations == []
