"""Consumers trust only what the topology and the key registry say (shared.messaging.trust),
through the real BatchProcessor on the in-memory store: a forged outcome changes no case
and goes to its topic's DLQ with the reason; a redrive header counts only when it carries
an operator's signed DeadLetterRedriven naming the record."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.router.handlers import RouterHandler
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import (
    Event,
    StepAssigned,
    StepOutcome,
    StepRejected,
    parse_event,
)
from shared.contracts.topology import (
    CASES_ACCEPTED,
    DLQ_REASON,
    OPERATOR,
    REDRIVE_HEADER,
    dept_outcomes,
    dlq,
)
from shared.messaging.consumer import BatchProcessor, Record
from shared.messaging.outbox import OutboxWriter
from shared.messaging.signing import PublicKeys
from shared.messaging.testing import MemoryStore, record_of, signer_for
from shared.messaging.trust import redrive_headers
from shared.platform.settings import Settings
from tests.support.builders import BENEFIT_FORM, accepted, applicant, outcome, redriven
from tests.support.fakes import RouterTables
from tests.support.signed import registry, signed, signer

pytestmark = pytest.mark.unit

SETTINGS = Settings(topic_prefix="unit.")
HR = "hr_registration"
SS = "social_security"
HR_OUTCOMES = SETTINGS.topic(dept_outcomes(HR))


def on(
    topic: str,
    event: Event,
    offset: int = 0,
    *,
    by: str | None = None,
    headers: tuple[tuple[str, bytes], ...] = (),
) -> Record:
    """``event`` on ``topic`` (logical), signed by ``by`` (default: the topic's writer)."""
    return signed(
        SETTINGS.topic(topic),
        event,
        prefix=SETTINGS.topic_prefix,
        offset=offset,
        by=by,
        headers=headers,
    )


class Routed:
    """A router with one case routed: its first step assigned to HR."""

    def __init__(self, catalogue: Catalogue, keys: PublicKeys | None = None) -> None:
        self.store = MemoryStore(RouterTables())
        self.router = BatchProcessor(
            SETTINGS,
            self.store,
            OutboxWriter(signer("router")),
            RouterHandler(catalogue),
            consumer_name="router",
            keys=keys or registry(),
        )
        self.case = accepted("SS-UNEMPLOYMENT-BENEFIT", applicant(1), BENEFIT_FORM)

    async def start(self) -> StepAssigned:
        await self.router.process([on(CASES_ACCEPTED, self.case)])
        tasks = [parse_event(r.value) for r in self.store.outbox]
        (task,) = [t for t in tasks if isinstance(t, StepAssigned)]
        self.mark = len(self.store.outbox)
        return task

    def status(self) -> str:
        return str(self.store.tables("router").cases[self.case.case_id]["status"])

    def dead_letters(self) -> list[tuple[str, str]]:
        return [
            (row.topic, dict(row.headers)[DLQ_REASON])
            for row in self.store.outbox[self.mark :]
            if row.topic.endswith(".dlq")
        ]

    def emitted(self) -> list[str]:
        return [row.topic for row in self.store.outbox[self.mark :]]


def rejection(task: StepAssigned) -> StepOutcome:
    return outcome(task, StepRejected, reason_code="not_eligible", message="forged")


async def assert_refused(routed: Routed, record: Record, reason: str) -> None:
    result = await routed.router.process([record])
    assert (result.processed, result.dead_lettered) == (0, 1)
    assert routed.dead_letters() == [(dlq(dept_outcomes(HR)), reason)]
    assert routed.emitted() == [dlq(dept_outcomes(HR))]  # no close, no next step
    assert routed.status() != "closed"
    # Claimed under its place in the log, never under the event id it claims: the real
    # outcome with that id is still applied when it comes.
    assert record.dead_letter_id() in routed.store.inbox
    assert parse_event(record.value or b"").event_id not in routed.store.inbox


async def test_an_unsigned_outcome_closes_no_case(catalogue: Catalogue) -> None:
    routed = Routed(catalogue)
    forged = rejection(await routed.start())
    await assert_refused(routed, record_of(HR_OUTCOMES, forged, offset=5), "missing_signature")


async def test_an_outcome_signed_by_another_service_closes_no_case(catalogue: Catalogue) -> None:
    routed = Routed(catalogue)
    forged = rejection(await routed.start())
    await assert_refused(routed, on(dept_outcomes(HR), forged, by=SS), "wrong_signer")


async def test_an_outcome_with_a_bad_signature_closes_no_case(catalogue: Catalogue) -> None:
    routed = Routed(catalogue)
    task = await routed.start()
    real = on(dept_outcomes(HR), rejection(task))
    headers = dict(real.headers)
    altered = (real.value or b"").replace(b"forged", b"FORGED")
    record = Record(real.topic, 0, 9, real.key, altered, tuple(headers.items()))
    await assert_refused(routed, record, "bad_signature")


async def test_another_key_claiming_to_be_the_department_closes_no_case(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    """Signed with a key the registry does not hold for the department (another
    service's key, the header naming the department)."""
    routed = Routed(catalogue)
    forged = rejection(await routed.start())
    impostor = signer_for(tmp_path, HR)  # a key of "hr_registration" nobody registered
    await assert_refused(routed, record_of(HR_OUTCOMES, forged, signer=impostor), "bad_signature")


async def test_a_signer_missing_from_the_registry_is_unknown(catalogue: Catalogue) -> None:
    everyone = registry()
    raw = {name: everyone.raw(name) for name in everyone.signers() if name != HR}
    routed = Routed(catalogue, PublicKeys({n: k for n, k in raw.items() if k}))
    task = await routed.start()
    await assert_refused(routed, on(dept_outcomes(HR), rejection(task)), "unknown_signer")


async def test_a_valid_record_copied_to_another_topic_is_refused(catalogue: Catalogue) -> None:
    """Social security's genuine outcome copied onto HR's outcomes topic."""
    routed = Routed(catalogue)
    forged = rejection(await routed.start())
    genuine = on(dept_outcomes(SS), forged.model_copy(update={"department": SS}))
    copied = Record(HR_OUTCOMES, 0, 3, genuine.key, genuine.value, genuine.headers)
    await assert_refused(routed, copied, "wrong_signer")


async def test_the_genuine_outcome_still_closes_the_case(catalogue: Catalogue) -> None:
    routed = Routed(catalogue)
    task = await routed.start()
    result = await routed.router.process([on(dept_outcomes(HR), rejection(task), offset=1)])
    assert (result.processed, result.dead_lettered) == (1, 0)
    assert routed.status() == "closed"


async def dead_lettered_outcome(routed: Routed) -> tuple[StepOutcome, Record]:
    """A genuine rejection dead-lettered by a handler failure (the router marks it dead)."""
    task = await routed.start()
    real = rejection(task)
    record = on(dept_outcomes(HR), real, offset=1)
    # What careful mode leaves after a handler failure: the id marked dead.
    async with routed.store.transaction() as uow:
        await uow.mark_dead(real.event_id, record)
    assert routed.store.inbox[real.event_id].dead_letter
    return real, record


@pytest.mark.parametrize(
    "proof",
    [
        "bare",  # the header alone, as before
        "unsigned",  # the act's bytes without a signature
        "wrong_signer",  # signed by the router, not an operator
        "other_event",  # an operator's act naming another record
        "other_topic",  # an operator's act naming another topic
    ],
)
async def test_an_unproven_redrive_header_does_nothing(catalogue: Catalogue, proof: str) -> None:
    routed = Routed(catalogue)
    real, _ = await dead_lettered_outcome(routed)
    act = redriven(real, dept_outcomes(HR), original_offset=1, operator="ops-7")
    headers: tuple[tuple[str, bytes], ...]
    if proof == "bare":
        headers = ((REDRIVE_HEADER, str(act.event_id).encode()),)
    elif proof == "unsigned":
        headers = ((REDRIVE_HEADER, act.to_json()),)
    elif proof == "wrong_signer":
        headers = tuple(redrive_headers(signer("router"), act))
    elif proof == "other_event":
        other = act.model_copy(update={"redriven_event_id": routed.case.event_id})
        headers = tuple(redrive_headers(signer(OPERATOR), other))
    else:
        other = act.model_copy(update={"original_topic": dept_outcomes(SS)})
        headers = tuple(redrive_headers(signer(OPERATOR), other))
    result = await routed.router.process([on(dept_outcomes(HR), real, 40, headers=headers)])
    assert (result.processed, result.duplicates) == (0, 1)  # a redelivery: a no-op
    assert routed.status() != "closed"
    assert routed.store.inbox[real.event_id].dead_letter


async def test_an_operators_signed_redrive_is_handled_once(catalogue: Catalogue) -> None:
    routed = Routed(catalogue)
    real, _ = await dead_lettered_outcome(routed)
    headers = tuple(
        redrive_headers(
            signer(OPERATOR), redriven(real, dept_outcomes(HR), original_offset=1, operator="ops-7")
        )
    )
    record = on(dept_outcomes(HR), real, 40, headers=headers)
    result = await routed.router.process([record])
    assert (result.processed, result.dead_lettered) == (1, 0)
    assert routed.status() == "closed"
    # The same re-driven record again (or the proof replayed): a no-op.
    again = await routed.router.process([record])
    assert (again.processed, again.duplicates) == (0, 1)
