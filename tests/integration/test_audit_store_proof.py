"""The audit store against its own superuser (issue 19, class 3): the real audit service
stores a log and signs checkpoints of it on the log; then, as PostgreSQL's superuser with
the append-only triggers off, each test rewrites the store as a careful forger would
(recomputing the plain SHA-256 chains) and verify names what was done, where."""

from __future__ import annotations

from collections import Counter
from uuid import UUID

import pytest

from deploy.audit_drill import Flow, LogWriter, flow
from deploy.audit_drill_store import (
    Tampering,
    audit_stores_the_log,
    first_place,
    log_end,
    superuser,
)
from services.audit import queries
from services.audit.verifier.log import log_partitions, read_log
from services.audit.verifier.report import (
    CHECKPOINT_MISMATCH,
    MISSING_FROM_STORE,
    NOT_IN_LOG,
    STORE_DIFFERS_FROM_LOG,
    STORE_TAMPERED,
    VerifyReport,
)
from services.audit.verifier.run import verify_log
from shared.contracts.audit_events import AuditCheckpoint
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import CaseClosed, parse_event
from shared.contracts.topology import AUDIT_CHECKPOINTS
from shared.department.decisions import Approve
from shared.platform.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def approved(log: LogWriter, catalogue: Catalogue) -> Flow:
    case = flow(log, catalogue)
    case.decide(Approve("HR-1"))
    case.decide(Approve("SS-1"))
    return case


@pytest.fixture
async def cases(settings: Settings, catalogue: Catalogue) -> list[Flow]:
    """Three approved two-step cases on the log, stored by the audit service, which
    signed a checkpoint of its store on the log."""
    log = LogWriter.create(settings)
    made = [approved(log, catalogue) for _ in range(3)]
    await log.flush()
    await audit_stores_the_log(settings)
    return made


def found(report: VerifyReport) -> Counter[tuple[str, UUID | None, UUID | None]]:
    return Counter((v.kind, v.case_id, v.event_id) for v in report.violations)


async def checkpoints(settings: Settings) -> list[AuditCheckpoint]:
    parts = [
        tp for tp in await log_partitions(settings) if tp.topic == settings.topic(AUDIT_CHECKPOINTS)
    ]
    out = []
    for record in await read_log(settings, None, parts):
        event = parse_event(record.value)
        assert isinstance(event, AuditCheckpoint)
        assert record.signer == "audit"
        out.append(event)
    return out


async def test_a_stored_clean_log_is_clean_both_ways(settings: Settings, cases: list[Flow]) -> None:
    report = await verify_log(settings)
    assert report.violations == [], [v.to_json() for v in report.violations]
    assert report.store_compared
    assert report.store_notes == []
    # The service signed what it stored: every record of the three cases, counted.
    marks = await checkpoints(settings)
    assert marks
    counted = {(m.topic, m.partition): m.rows for c in marks for m in c.partitions}
    assert sum(counted.values()) == sum(len(c.events) for c in cases)


async def test_a_row_rewritten_with_its_chain_recomputed_is_found(
    settings: Settings, cases: list[Flow]
) -> None:
    case = cases[0]
    conn = await superuser(settings)
    try:
        async with Tampering(conn) as t:
            event_id = await t.rewrite(
                case.case_id, "CaseClosed", {"outcome": "rejected", "reason_code": "forged"}
            )
        # Before: the live view says approved. rebuild names the case, every time, and
        # leaves the live view as evidence until told to replace it.
        first = await queries.rebuild_projection(conn)
        second = await queries.rebuild_projection(conn)
    finally:
        await conn.close()
    assert event_id == case.last(CaseClosed).event_id
    for result in (first, second):
        assert [d.case_id for d in result.differences] == [case.case_id]
        assert "outcome" in result.differences[0].fields
        assert not result.replaced
    report = await verify_log(settings)
    kinds = found(report)
    assert kinds[(STORE_TAMPERED, case.case_id, event_id)] == 1
    assert kinds[(STORE_DIFFERS_FROM_LOG, case.case_id, event_id)] == 1
    assert {k for k, _, _ in kinds} == {STORE_TAMPERED, STORE_DIFFERS_FROM_LOG, CHECKPOINT_MISMATCH}
    assert all(c is None for k, c, _ in kinds if k == CHECKPOINT_MISMATCH)


async def test_a_cases_last_rows_deleted_are_found(settings: Settings, cases: list[Flow]) -> None:
    case = cases[1]
    conn = await superuser(settings)
    try:
        async with Tampering(conn) as t:
            gone = await t.delete_last(case.case_id, 2)
    finally:
        await conn.close()
    report = await verify_log(settings)
    kinds = found(report)
    assert {(k, c, e) for k, c, e in kinds if k == MISSING_FROM_STORE} == {
        (MISSING_FROM_STORE, case.case_id, e) for e in gone
    }
    # The chain still links, and every remaining row's MAC checks: only the log and the
    # checkpoint know.
    assert {k for k, _, _ in kinds} == {MISSING_FROM_STORE, CHECKPOINT_MISMATCH}


async def test_a_row_the_log_lacks_is_found(settings: Settings, cases: list[Flow]) -> None:
    case = cases[2]
    conn = await superuser(settings)
    try:
        topic, partition = await first_place(conn, case.case_id, "StepApproved")
        beyond = await log_end(settings, topic, partition) + 5
        async with Tampering(conn) as t:
            added = await t.insert_copy(case.case_id, "StepApproved", beyond=beyond)
    finally:
        await conn.close()
    report = await verify_log(settings)
    assert found(report) == Counter(
        {(NOT_IN_LOG, case.case_id, added): 1, (STORE_TAMPERED, case.case_id, added): 1}
    )
    where = next(v for v in report.violations if v.kind == NOT_IN_LOG)
    assert (where.topic, where.partition, where.offset) == (topic, partition, beyond)


async def test_a_row_of_the_log_deleted_is_found(settings: Settings, cases: list[Flow]) -> None:
    case = cases[0]
    conn = await superuser(settings)
    try:
        async with Tampering(conn) as t:
            deleted = await t.delete(case.case_id, "StepAssigned")
    finally:
        await conn.close()
    report = await verify_log(settings)
    kinds = found(report)
    assert kinds[(MISSING_FROM_STORE, case.case_id, deleted)] == 1
    # The rows after it were chained anew: the first of them fails its MAC.
    tampered = [v for v in report.violations if v.kind == STORE_TAMPERED]
    assert [v.case_id for v in tampered] == [case.case_id]
    assert {k for k, _, _ in kinds} == {MISSING_FROM_STORE, STORE_TAMPERED, CHECKPOINT_MISMATCH}
