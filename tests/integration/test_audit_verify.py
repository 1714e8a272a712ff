"""onedoor-audit verify against the real broker: for every violation kind, the offending
records are written straight to the Kafka topics (as a buggy or malicious producer
would) and verify must report exactly that violation, for that case, and nothing else."""

from __future__ import annotations

import asyncpg
import pytest
from rich.console import Console

from deploy.audit_drill import (
    FAULTS,
    LogWriter,
    announce_deadlines,
    clean_cases,
    drill,
    flow,
    found,
)
from services.audit import store
from services.audit.ingest import SignatureJudge
from services.audit.verifier.log import LogRecord, read_log
from services.audit.verifier.report import (
    BROKEN_HASH_CHAIN,
    STORE_KINDS,
    VIOLATION_KINDS,
    VerifyReport,
)
from services.audit.verifier.run import verify_log
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import Event, EventDecodeError, parse_event
from shared.department.decisions import Reject
from shared.messaging import MESSAGING_MIGRATIONS
from shared.messaging.signing import SIGNATURE_HEADER, SIGNER_HEADER
from shared.platform.db import migrate_dsn
from shared.platform.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SCHEMA = store.SCHEMA
MIGRATIONS = [store.MIGRATIONS_DIR]


def decode(record: LogRecord) -> Event | None:
    """The record's event, of its own class (comparable with ``==``), or None."""
    try:
        return parse_event(record.value)
    except EventDecodeError:
        return None


@pytest.fixture
def log(settings: Settings) -> LogWriter:
    return LogWriter.create(settings)


async def test_a_clean_log_has_no_violations(log: LogWriter, catalogue: Catalogue) -> None:
    clean_cases(log, catalogue)
    await log.flush()
    report = await verify_log(log.settings)
    assert report.violations == []
    assert report.cases == 4  # one of them waits for the applicant's information


async def test_identical_redelivery_is_not_a_violation(
    log: LogWriter, catalogue: Catalogue
) -> None:
    case = flow(log, catalogue)
    outcome = case.decide(Reject("already_registered", "m"))
    log.add(f"dept.{outcome.department}.outcomes", outcome)
    await log.flush()
    report = await verify_log(log.settings)
    assert report.violations == []


@pytest.mark.parametrize("kind", sorted(FAULTS))
async def test_each_fault_is_found_exactly(kind: str, log: LogWriter, catalogue: Catalogue) -> None:
    clean_cases(log, catalogue)
    expected = FAULTS[kind](log, catalogue)
    announce_deadlines(log)  # a working deadline service's notices for the late cases
    await log.flush()
    report = await verify_log(log.settings)
    # A fault that is also another kind at the same record (a forged copy fails its
    # signature) is reported as both, at that record, and as nothing else; a deadline
    # fault's case is also late, at its own record (``elsewhere``).
    assert sorted((v.kind, v.severity, v.case_id) for v in report.violations) == sorted(
        [(expected.kind, expected.severity, expected.case_id)]
        + [(kind, "error", expected.case_id) for kind in (*expected.also, *expected.elsewhere)]
    ), report.violations
    at_fault = [v for v in report.violations if v.kind not in expected.elsewhere]
    if expected.event_id is not None:
        assert {v.event_id for v in at_fault} == {expected.event_id}
    assert len({(v.topic, v.partition, v.offset) for v in at_fault}) == 1


def test_every_violation_kind_is_exercised() -> None:
    # broken_hash_chain is a property of the audit store: test_audit_store tampers a row;
    # the store held to the log: test_audit_store_proof, and the drill's store faults.
    assert set(FAULTS) | {BROKEN_HASH_CHAIN, *STORE_KINDS} == set(VIOLATION_KINDS)


async def test_the_drill_finds_every_fault_at_once(settings: Settings) -> None:
    console = Console(record=True, width=200)
    code = await drill(settings, console)
    assert code == 0, console.export_text()


async def store_verdicts(settings: Settings) -> int:
    """What the audit service does at ingest, for every record in the log now: check each
    signature once and keep the verdict in the store. Returns how many it stored."""
    await migrate_dsn(settings.dsn(), SCHEMA, [MESSAGING_MIGRATIONS, *MIGRATIONS])
    records = await read_log(settings)
    verdicts = SignatureJudge(settings.keys_dir).verdicts([(r, decode(r)) for r in records])
    conn = await asyncpg.connect(settings.dsn(), server_settings={"search_path": SCHEMA})
    try:
        async with conn.transaction():
            return await store.record_verdicts(conn, settings.topic_prefix, verdicts)
    finally:
        await conn.close()


async def test_rechecking_every_signature_gives_the_same_report(
    log: LogWriter, catalogue: Catalogue
) -> None:
    clean_cases(log, catalogue)
    await log.flush()
    stored = await store_verdicts(log.settings)
    assert stored > 0
    default = await verify_log(log.settings)
    recheck = await verify_log(log.settings, recheck_signatures=True)
    assert default.violations == recheck.violations == []
    assert default.records == recheck.records == stored
    assert (default.signatures_checked, default.signatures_reused) == (0, stored)
    assert (recheck.signatures_checked, recheck.signatures_reused) == (stored, 0)


async def test_a_record_altered_after_ingest_is_not_covered_by_its_verdict(
    log: LogWriter, catalogue: Catalogue
) -> None:
    case = flow(log, catalogue)
    outcome = case.decide(Reject("already_registered", "m"))
    await log.flush()
    await store_verdicts(log.settings)
    # The same event id later in the log, other bytes under the original signature.
    topic = f"dept.{outcome.department}.outcomes"
    original = outcome.to_json()
    headers = [(k, v.encode()) for k, v in log.signers[outcome.department].headers(original)]
    altered = outcome.model_copy(update={"message": "changed after ingest"}).to_json()
    log.add_raw(topic, altered, headers, key=str(case.case_id).encode())
    await log.flush()
    report = await verify_log(log.settings)
    # The altered copy never counts (the genuine record does): a forged copy.
    assert sorted((v.kind, v.event_id) for v in report.violations) == [
        ("bad_signature", outcome.event_id),
        ("forged_copy", outcome.event_id),
    ], report.violations
    assert report.signatures_checked == 1
    assert report.signatures_reused == report.records - 1


def _same_report(a: VerifyReport, b: VerifyReport) -> None:
    assert a.violations == b.violations
    assert (a.records, a.events, a.cases) == (b.records, b.events, b.cases)
    assert (a.signatures_checked, a.signatures_reused) == (
        b.signatures_checked,
        b.signatures_reused,
    )


async def test_two_processes_find_every_fault_one_process_finds(
    log: LogWriter, catalogue: Catalogue
) -> None:
    clean_cases(log, catalogue)
    # Not the faults that move a case's record to another partition: those make every
    # replay fall back to one process (test_a_case_across_two_processes_is_checked_in_one).
    expected = [
        fault(log, catalogue)
        for name, fault in FAULTS.items()
        if name not in {"wrong_key", "wrong_partition"}
    ]
    await log.flush()
    one = await verify_log(log.settings, processes=1)
    two = await verify_log(log.settings, processes=2)
    assert (one.processes, two.processes) == (1, 2)
    assert all(found(two, item) for item in expected)
    _same_report(two, one)


async def test_a_case_across_two_processes_is_checked_in_one(
    log: LogWriter, catalogue: Catalogue
) -> None:
    case = flow(log, catalogue)
    outcome = case.decide(Reject("already_registered", "m"))
    clean_cases(log, catalogue)
    await log.flush()
    topic = f"dept.{outcome.department}.outcomes"
    record = next(r for r in await read_log(log.settings) if decode(r) == outcome)
    # The same record again, in a partition the other process reads (which no producer
    # with the project's partitioner does: a wrong_partition).
    log.add_raw(
        topic,
        record.value,
        [
            (SIGNER_HEADER, str(record.signer).encode()),
            (SIGNATURE_HEADER, str(record.signature).encode()),
        ],
        key=str(case.case_id).encode(),
        partition=1 if record.partition % 2 == 0 else 0,  # process 1 reads the odd ones
    )
    await log.flush()
    one = await verify_log(log.settings, processes=1)
    two = await verify_log(log.settings, processes=2)
    assert two.processes == 1  # the merge was refused; the whole log was checked at once
    assert [(v.kind, v.event_id, v.partition) for v in one.errors()] == [
        ("wrong_partition", outcome.event_id, 1 if record.partition % 2 == 0 else 0)
    ]
    assert one.events == one.records - 1  # the copy is the same event, not a second one
    _same_report(two, one)


async def test_the_stall_age_and_the_clock_skew_are_settings(
    log: LogWriter, catalogue: Catalogue
) -> None:
    stalled = FAULTS["stalled_case"](log, catalogue)
    skewed = FAULTS["clock_skew"](log, catalogue)
    await log.flush()
    report = await verify_log(log.settings)
    assert found(report, stalled)
    assert found(report, skewed)
    lenient = log.settings.model_copy(
        update={"audit_stall_after_s": 7200.0, "audit_clock_skew_s": 3 * 86400.0}
    )
    assert (await verify_log(lenient)).violations == []
