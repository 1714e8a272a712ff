"""The router's store on the real PostgreSQL server: what it writes, it reads back."""

from __future__ import annotations

import shutil
from pathlib import Path
from uuid import uuid4

import pytest

from services.router import domain, store
from services.router.main import MIGRATIONS
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import StepNeedsInfo
from shared.messaging import MESSAGING_MIGRATIONS
from shared.platform.db import connect, migrate_dsn
from tests.support.builders import JOB_FORM, NOW, accepted, applicant

pytestmark = pytest.mark.integration

FORM = JOB_FORM


async def test_cases_stored_before_and_after_the_wire_bytes_migration_load_alike(
    database_url: str, catalogue: Catalogue, tmp_path: Path
) -> None:
    # A row written by the router before migration 002 (accepted as jsonb) and one
    # written after (the event's wire bytes) both load with the event they stored.
    before = tmp_path / "before"
    before.mkdir()
    shutil.copy(MIGRATIONS / "001_router.sql", before)
    schema = f"router_{uuid4().hex[:8]}"
    await migrate_dsn(database_url, schema, [MESSAGING_MIGRATIONS, before])
    old = accepted("HR-JOB-REGISTRATION", applicant(1), FORM)
    new = accepted("HR-JOB-REGISTRATION", applicant(2), FORM)
    old_state, _ = domain.route(old, catalogue, NOW)
    new_state, _ = domain.route(new, catalogue, NOW)
    assert old_state is not None
    assert new_state is not None
    conn = await connect(database_url, schema, name="test")
    try:
        await conn.execute(
            "INSERT INTO cases (case_id, correlation_id, item_code, catalogue_version, steps,"
            " accepted, status, on_spot, promised_by)"
            " VALUES ($1, $1, $2, $3, '[]', $4::text::jsonb, 'in_progress', false, $5)",
            old.case_id,
            old_state.item_code,
            old_state.catalogue_version,
            old.to_json().decode(),
            NOW,
        )
        assert await migrate_dsn(database_url, schema, [MESSAGING_MIGRATIONS, MIGRATIONS]) == [
            "002_accepted_wire_bytes.sql",
            "003_working_days.sql",
        ]
        async with conn.transaction():
            await store.insert(conn, [new_state])
            loaded, rejected = await store.load_for_update(conn, [old.case_id, new.case_id])
        assert rejected == set()
        assert loaded[old.case_id].accepted() == old
        assert loaded[new.case_id] == new_state
        stored = await conn.fetchval("SELECT accepted FROM cases WHERE case_id = $1", new.case_id)
        assert stored == new.to_json()
    finally:
        await conn.close()


async def test_a_case_waiting_for_information_is_stored_as_waiting(
    database_url: str, catalogue: Catalogue
) -> None:
    # After a restart the router still knows the step waits for the applicant, so a
    # second answer for it is still refused.
    schema = f"router_{uuid4().hex[:8]}"
    await migrate_dsn(database_url, schema, [MESSAGING_MIGRATIONS, MIGRATIONS])
    case = accepted("HR-JOB-REGISTRATION", applicant(3), FORM)
    state, _ = domain.route(case, catalogue, NOW)
    assert state is not None
    asked = StepNeedsInfo(
        **case.caused(),
        producer="hr_registration",
        step_index=0,
        department="hr_registration",
        action=state.steps[0].action,
        item_code=state.item_code,
        applicant_ref=case.applicant.ref,
        applicant_kind=case.applicant.kind,
        missing=("education",),
        message="m",
    )
    waiting, _ = domain.on_outcome(state, asked, NOW)
    conn = await connect(database_url, schema, name="test")
    try:
        async with conn.transaction():
            await store.insert(conn, [state])
            await store.update(conn, [waiting])
        async with conn.transaction():
            loaded, _ = await store.load_for_update(conn, [case.case_id])
    finally:
        await conn.close()
    assert loaded[case.case_id] == waiting
    assert (waiting.status, waiting.current_step) == ("waiting_info", 0)
    with pytest.raises(domain.RoutingViolationError, match="waits for information"):
        domain.on_outcome(loaded[case.case_id], asked.model_copy(update={"event_id": uuid4()}), NOW)
