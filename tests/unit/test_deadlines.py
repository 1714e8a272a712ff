"""The deadline service's rules (services/deadlines/domain.py) and verify's rules over its
notices (services/audit/verifier/deadlines.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from services.audit.verifier.report import (
    DEADLINE_ANNOUNCED_EARLY,
    DEADLINE_ANNOUNCED_TWICE,
    DEADLINE_ANNOUNCED_WRONGLY,
    DEADLINE_NOT_ANNOUNCED,
    OVERDUE,
    VerifyReport,
)
from services.deadlines.domain import MISSED, WARNING, Timer, owed_notices
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import CaseRouted, DeadlineMissed, DeadlineWarning, StepAssigned
from shared.contracts.topology import CASES_DEADLINES
from shared.messaging.keyring import generate
from shared.messaging.signing import PublicKeys
from shared.messaging.testing import signer_for
from tests.unit.test_audit_domain import SERVICES, T0, Keys, LogBuilder

pytestmark = pytest.mark.unit

DUE = datetime(2026, 12, 10, 16, tzinfo=UTC)
WARN = DUE - timedelta(days=1)


def timer() -> Timer:
    return Timer(
        task_id=uuid4(),
        case_id=uuid4(),
        correlation_id=uuid4(),
        step_index=0,
        department="hr_registration",
        review=False,
        due_by=DUE,
        warn_at=WARN,
    )


def _with(base: Timer, changes: dict[str, Any]) -> Timer:
    return replace(base, **changes)


# --------------------------------------------------------------------------- the service's rules


def test_an_undecided_step_owes_a_warning_then_a_miss() -> None:
    t = timer()
    assert t.owed(WARN - timedelta(seconds=1)) == []
    assert t.owed(WARN) == [WARNING]
    assert t.owed(DUE) == [WARNING, MISSED]
    assert _with(t, {"warned": True}).owed(DUE) == [MISSED]
    assert not t.settled()
    assert t.settled(frozenset({WARNING, MISSED}))


def test_a_step_decided_in_time_owes_nothing_and_settles() -> None:
    t = _with(timer(), {"decided_at": WARN - timedelta(hours=1)})
    assert t.owed(DUE + timedelta(days=9)) == []
    assert t.settled()


def test_a_step_decided_after_its_warning_owes_the_warning_only() -> None:
    t = _with(timer(), {"decided_at": WARN + timedelta(hours=1)})
    assert t.owed(DUE + timedelta(days=1)) == [WARNING]
    assert t.settled(frozenset({WARNING}))


def test_a_step_decided_late_still_owes_its_miss() -> None:
    # The outcome reached the service after the due time: the promise was still missed.
    t = _with(timer(), {"decided_at": DUE + timedelta(hours=1), "warned": True})
    assert t.owed(DUE + timedelta(days=1)) == [MISSED]


def test_a_withdrawn_case_stops_its_steps_clock_but_not_a_reviews() -> None:
    closed = WARN - timedelta(hours=1)
    assert _with(timer(), {"closed_at": closed}).owed(DUE) == []
    assert _with(timer(), {"closed_at": closed, "review": True}).owed(DUE) == [WARNING, MISSED]


def test_a_v1_task_owes_a_miss_but_no_warning() -> None:
    t = _with(timer(), {"warn_at": None})
    assert t.owed(DUE) == [MISSED]


def test_a_notice_is_signed_by_the_deadline_service_and_caused_by_the_task() -> None:
    t = timer()
    warning = t.notice(WARNING, WARN, uuid4())
    assert isinstance(warning, DeadlineWarning)
    assert (warning.producer, warning.causation_id, warning.warn_at) == (
        "deadlines",
        t.task_id,
        WARN,
    )
    missed = t.notice(MISSED, DUE, uuid4())
    assert isinstance(missed, DeadlineMissed)
    assert (missed.due_by, missed.correlation_id) == (DUE, t.correlation_id)


# --------------------------------------------------------------------------- verify's rules


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("keys")
    for service in SERVICES:
        generate(folder, service, now=T0 - timedelta(days=30))
    return Keys({s: signer_for(folder, s) for s in SERVICES}, PublicKeys.load(folder))


@pytest.fixture
def log(catalogue: Catalogue, keys: Keys) -> LogBuilder:
    return LogBuilder(catalogue, keys)


def kinds(report: VerifyReport) -> list[str]:
    return sorted(v.kind for v in report.errors())


def late_case(log: LogBuilder) -> datetime:
    """A case whose department never answers; returns its promise."""
    accepted = log.undecided()
    return log.find(accepted.case_id, CaseRouted).promised_by


def test_notices_given_in_time_satisfy_verify(log: LogBuilder) -> None:
    promised = late_case(log)
    log.announce_deadlines(promised)
    assert kinds(log.verify(now=promised + timedelta(hours=1))) == [OVERDUE]


def test_a_miss_never_announced_is_found(log: LogBuilder) -> None:
    promised = late_case(log)
    warning = next(n for n in log.announce_deadlines(promised) if isinstance(n, DeadlineWarning))
    # Only the warning is on the log: the miss was never given.
    log.records = [r for r in log.records if b"DeadlineMissed" not in r.value]
    log.events = [e for e in log.events if not isinstance(e, DeadlineMissed)]
    report = log.verify(now=promised + timedelta(hours=1))
    assert kinds(report) == [DEADLINE_NOT_ANNOUNCED, OVERDUE]
    found = next(v for v in report.violations if v.kind == DEADLINE_NOT_ANNOUNCED)
    assert "no DeadlineMissed" in found.detail
    assert warning.event_type == "DeadlineWarning"
    # Not owed yet within the stall time: a lagging service is not accused at once.
    assert kinds(log.verify(now=promised + timedelta(minutes=10))) == [OVERDUE]


def test_a_notice_given_twice_early_or_for_a_step_decided_in_time_is_found(
    log: LogBuilder,
) -> None:
    promised = late_case(log)
    notices = log.announce_deadlines(promised)
    missed = next(n for n in notices if isinstance(n, DeadlineMissed))
    again = missed.model_copy(
        update={"event_id": uuid4(), "occurred_at": missed.occurred_at + timedelta(seconds=5)}
    )
    log.publish(CASES_DEADLINES, again)
    assert kinds(log.verify(now=promised + timedelta(hours=1))) == [
        DEADLINE_ANNOUNCED_TWICE,
        OVERDUE,
    ]


def test_a_notice_given_before_its_time_is_found(log: LogBuilder) -> None:
    promised = late_case(log)
    for notice in owed_notices(log.events, promised):
        early = {"occurred_at": notice.due_by - timedelta(days=2)}  # a day before the warning
        log.publish(
            CASES_DEADLINES,
            notice.model_copy(update=early) if isinstance(notice, DeadlineWarning) else notice,
        )
    report = log.verify(now=promised + timedelta(hours=1))
    assert kinds(report) == [DEADLINE_ANNOUNCED_EARLY, OVERDUE]


def test_a_notice_for_a_step_decided_in_time_is_found(log: LogBuilder) -> None:
    accepted = log.benefit_approved()  # both steps decided within seconds
    task = log.find(accepted.case_id, StepAssigned, step_index=0)
    assert task.warn_at is not None
    wrong = DeadlineWarning(
        **task.caused(),
        producer="deadlines",
        step_index=0,
        department=task.department,
        review=False,
        due_by=task.due_by,
        warn_at=task.warn_at,
        occurred_at=task.warn_at + timedelta(seconds=1),
    )
    log.publish(CASES_DEADLINES, wrong)
    report = log.verify(now=task.due_by + timedelta(hours=1))
    assert kinds(report) == [DEADLINE_ANNOUNCED_WRONGLY]
    assert log.announce_deadlines(task.due_by + timedelta(days=30)) == []  # nothing owed
