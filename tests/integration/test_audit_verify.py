"""onedoor-audit verify against the real broker: for every violation kind, the offending
records are written straight to the Kafka topics (as a buggy or malicious producer
would) and verify must report exactly that violation, for that case, and nothing else."""

from __future__ import annotations

import pytest
from rich.console import Console

from deploy.audit_drill import FAULTS, LogWriter, clean_cases, drill, flow
from services.audit.cli import run_verify
from services.audit.domain import BROKEN_HASH_CHAIN, VIOLATION_KINDS
from shared.catalogue import Catalogue, default_catalogue
from shared.decisions import Reject
from shared.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return default_catalogue()


@pytest.fixture
def log(settings: Settings) -> LogWriter:
    return LogWriter.create(settings)


async def test_a_clean_log_has_no_violations(log: LogWriter, catalogue: Catalogue) -> None:
    clean_cases(log, catalogue)
    await log.flush()
    report, _, _ = await run_verify(log.settings, check_signatures=True, quiet=True)
    assert report.violations == []
    assert report.cases == 3


async def test_identical_redelivery_is_not_a_violation(
    log: LogWriter, catalogue: Catalogue
) -> None:
    case = flow(log, catalogue)
    outcome = case.decide(Reject("already_registered", "m"))
    log.add(f"dept.{outcome.department}.outcomes", outcome)
    await log.flush()
    report, _, _ = await run_verify(log.settings, check_signatures=True, quiet=True)
    assert report.violations == []


@pytest.mark.parametrize("kind", sorted(FAULTS))
async def test_each_fault_is_found_exactly(kind: str, log: LogWriter, catalogue: Catalogue) -> None:
    clean_cases(log, catalogue)
    expected = FAULTS[kind](log, catalogue)
    await log.flush()
    report, _, _ = await run_verify(log.settings, check_signatures=True, quiet=True)
    assert [(v.kind, v.severity, v.case_id) for v in report.violations] == [
        (expected.kind, expected.severity, expected.case_id)
    ], report.violations
    if expected.event_id is not None:
        assert report.violations[0].event_id == expected.event_id


def test_every_violation_kind_is_exercised() -> None:
    # broken_hash_chain is a property of the audit store: test_audit_store tampers a row.
    assert set(FAULTS) | {BROKEN_HASH_CHAIN} == set(VIOLATION_KINDS)


async def test_the_drill_finds_every_fault_at_once(settings: Settings) -> None:
    console = Console(record=True, width=200)
    code = await drill(settings, console)
    assert code == 0, console.export_text()
