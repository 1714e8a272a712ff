"""The adapter SDK: how a department plugs into onedoor.

A department is one package under ``services/`` with:

- ``catalogue.yaml``: its items (the router and intake discover it by itself);
- ``department.py``: a :class:`Department` with one handler per action, and optionally
  learners for other departments' outcomes;
- ``main.py``: ``build(settings)``, which is ``create_service(department, settings)``, and
  the ``__main__.py`` every service has (``run_service(build)``).

The SDK does the rest: it subscribes to ``dept.<name>.tasks`` (and the outcome topics
the department learns from), parses records with the event registry, runs the handler
with the inbox and outbox in one PostgreSQL transaction, commits offsets only after it,
signs the outcome events, and dead-letters what cannot be parsed or handled.

    department = Department("civil_affairs")

    @department.action("marriage_certificate_copy")
    async def certificate_copy(ctx: StepContext, task: StepAssigned) -> Decision:
        return Approve(reference=f"CA-{task.case_id.hex[:8]}")
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel

from shared.contracts.calendar import centre_day
from shared.contracts.events import (
    Event,
    StepApproved,
    StepAssigned,
    StepNeedsInfo,
    StepOutcome,
    StepRejected,
)
from shared.contracts.sealing import SealError
from shared.contracts.topology import dept_outcomes
from shared.department.decisions import Approve, Decision, NeedsInfo, Reject, TaskFacts
from shared.department.keys import DataKeys, OpenedApplicant
from shared.department.rules import UnknownActionError
from shared.messaging.consumer import (
    BatchProcessor,
    ConsumerLoop,
    NotReadyError,
    StatefulHandler,
    Tx,
)
from shared.platform.db import Connection
from shared.platform.privacy_keys import load_centre_secret
from shared.platform.runtime import Plumbing, ServiceContext, Topics, open_service, run_service
from shared.platform.settings import Settings

SDK_MIGRATIONS = Path(__file__).parent / "migrations"

M = TypeVar("M", bound=BaseModel)


class UnexpectedEventError(ValueError):
    """A record on a department's topics that the department has no use for."""


SubjectKey = tuple[str, str]  # (kind, subject_id)


class SubjectCache:
    """The subjects one batch touches: read in one query, written back in one.

    Entries hold the JSON state (None: never seen). A handler that saves a subject and a
    later task of the same batch that loads it see the same record, as they would with a
    query per task inside the one transaction.
    """

    def __init__(self) -> None:
        self.states: dict[SubjectKey, dict[str, Any] | None] = {}
        self.dirty: dict[SubjectKey, None] = {}

    async def prefetch(self, conn: Connection, keys: Iterable[SubjectKey]) -> None:
        """Forget the last batch; read and lock ``keys`` (locked in key order, so two
        replicas cannot deadlock on one pair of subjects)."""
        self.states, self.dirty = {}, {}
        wanted = sorted(set(keys))
        if not wanted:
            return
        rows = await conn.fetch(
            "SELECT s.kind, s.subject_id, s.state FROM subjects s "
            "JOIN unnest($1::text[], $2::text[]) AS k(kind, subject_id) "
            "USING (kind, subject_id) ORDER BY s.kind, s.subject_id FOR UPDATE OF s",
            [k for k, _ in wanted],
            [i for _, i in wanted],
        )
        self.states = dict.fromkeys(wanted)
        for row in rows:
            self.states[row["kind"], row["subject_id"]] = row["state"]

    async def get(self, conn: Connection, key: SubjectKey) -> dict[str, Any] | None:
        if key not in self.states:  # not foreseen by prefetch: read it on its own
            self.states[key] = await conn.fetchval(
                "SELECT state FROM subjects WHERE kind = $1 AND subject_id = $2 FOR UPDATE",
                *key,
            )
        return self.states[key]

    def put(self, key: SubjectKey, state: dict[str, Any]) -> None:
        self.states[key] = state
        self.dirty[key] = None

    async def flush(self, conn: Connection) -> None:
        if not self.dirty:
            return
        keys = list(self.dirty)
        await conn.execute(
            """INSERT INTO subjects (kind, subject_id, state)
               SELECT k, i, s::jsonb FROM unnest($1::text[], $2::text[], $3::text[]) AS u(k, i, s)
               ON CONFLICT (kind, subject_id)
               DO UPDATE SET state = EXCLUDED.state, updated_at = now()""",
            [k for k, _ in keys],
            [i for _, i in keys],
            [json.dumps(self.states[key], separators=(",", ":"), default=str) for key in keys],
        )
        self.dirty = {}


@dataclass
class StepContext:
    """What a handler gets besides the task: the open transaction, the subject store and
    the data keys that open the applicant's sealed fields."""

    department: str
    conn: Connection
    subjects: SubjectCache = field(default_factory=SubjectCache)
    keys: DataKeys | None = None

    def applicant(self, task: StepAssigned) -> OpenedApplicant:
        """The task's applicant with the fields opened (for this decision only: keep the
        clear values out of records, outcome facts and messages).

        Raises:
            SealError: the applicant was erased (the task is dead-lettered).
        """
        if self.keys is None:
            raise SealError("this department was given no privacy key")
        return self.keys.open(task.applicant, task.case_id)

    def facts(self, task: StepAssigned) -> TaskFacts:
        """The plain facts of ``task`` for pure rules, the applicant opened."""
        return facts(task, self.applicant(task))

    async def load(self, model: type[M], kind: str, subject_id: str) -> M:
        """The department's record of a subject (a person or company), locked for this
        transaction; a fresh one when never seen."""
        state = await self.subjects.get(self.conn, (kind, subject_id))
        if state is None:
            return model.model_validate({"subject_id": subject_id})
        return model.model_validate(state)

    async def save(self, kind: str, record: BaseModel) -> None:
        """Keep the record; it is written with the rest of the batch, before the commit."""
        state = record.model_dump(mode="json")
        self.subjects.put((kind, state["subject_id"]), state)


ActionHandler = Callable[[StepContext, StepAssigned], Awaitable[Decision]]
Learner = Callable[[StepContext, StepOutcome], Awaitable[None]]
P = TypeVar("P", bound=BaseModel)
C = TypeVar("C", bound=BaseModel)
SubjectRules = Callable[[TaskFacts, P | None, C | None], tuple[Decision, P | None, C | None]]


def facts(task: StepAssigned, applicant: OpenedApplicant) -> TaskFacts:
    """The plain facts of a task, for pure department rules (``applicant``: the task's
    applicant opened, :meth:`StepContext.applicant`)."""
    return TaskFacts(
        case_id=str(task.case_id),
        item_code=task.item_code,
        action=task.action,
        step_index=task.step_index,
        applicant_kind=task.applicant.kind,
        applicant_ref=task.applicant.ref,
        applicant_id=applicant.id_number,
        applicant_name=applicant.name,
        community_code=task.community_code,
        form=task.form,
        assigned_on=centre_day(task.occurred_at),
        review=task.review,
    )


@dataclass
class Department:
    """A department's declaration: its name, its actions, what it learns from others."""

    name: str
    migrations: Sequence[Path] = ()
    actions: dict[str, ActionHandler] = field(default_factory=dict)
    learners: dict[str, Learner] = field(default_factory=dict)

    def action(self, name: str) -> Callable[[ActionHandler], ActionHandler]:
        """Register the handler of one action (``@department.action("benefit_claim")``)."""

        def register(fn: ActionHandler) -> ActionHandler:
            if name in self.actions:
                raise ValueError(f"{self.name}: action {name} registered twice")
            self.actions[name] = fn
            return fn

        return register

    def learns_from(self, department: str) -> Callable[[Learner], Learner]:
        """Register a learner for another department's outcomes (``dept.<d>.outcomes``)."""

        def register(fn: Learner) -> Learner:
            self.learners[department] = fn
            return fn

        return register

    def handler(self, keys: DataKeys | None = None, *, slow_s: float = 0.0) -> StatefulHandler:
        """The batch handler the consumer loop runs for every parsed event (``keys``:
        what opens the applicants' sealed fields; ``slow_s``: the fault suite's slow
        department, see ``ONEDOOR_FAULT_SLOW_ACTION_S``)."""
        return _DepartmentHandler(self, keys, slow_s)

    async def decide(
        self, ctx: StepContext, tx: Tx, task: StepAssigned, *, ready: bool, slow_s: float = 0.0
    ) -> None:
        """Decide one task and emit its outcome (``ready``: the approval that released it,
        if any, is in this department's inbox)."""
        if task.department != self.name:
            raise UnexpectedEventError(f"task for {task.department} on {self.name}'s topic")
        if not ready:
            raise NotReadyError(f"waiting for {task.follows_department} outcome")
        handler = self.actions.get(task.action)
        if handler is None:
            raise UnknownActionError(f"{self.name} has no action {task.action!r}")
        if slow_s:
            await asyncio.sleep(slow_s)  # fault suite only: a department past its deadline
        decision = await handler(ctx, task)
        tx.emit(dept_outcomes(self.name), outcome_event(self.name, task, decision))

    def waits_for(self, task: StepAssigned) -> UUID | None:
        """The approval a task must wait for: released by another department's approval
        that we learn from, it is decided only once we have seen that approval ourselves."""
        if task.follows_department in self.learners and task.causation_id is not None:
            return task.causation_id
        return None


class _DepartmentHandler(StatefulHandler):
    """Runs a department over a batch: its subjects and the approvals its tasks wait for
    are read in one query each; changed subjects are written back in one."""

    def __init__(
        self, department: Department, keys: DataKeys | None = None, slow_s: float = 0.0
    ) -> None:
        self.department = department
        self.keys = keys
        self.slow_s = slow_s
        self.subjects = SubjectCache()
        self.seen: set[UUID] = set()

    async def load(self, conn: Connection, events: Sequence[Event]) -> None:
        keys: list[SubjectKey] = []
        waits: list[UUID] = []
        for event in events:
            if isinstance(event, StepAssigned):
                kind = "person" if event.applicant.kind == "natural" else "company"
                keys.append((kind, event.applicant.ref))
                if (approval := self.department.waits_for(event)) is not None:
                    waits.append(approval)
            elif isinstance(event, StepOutcome):
                # Learners usually update the applicant's record: read it with the rest.
                kind = "person" if event.applicant_kind == "natural" else "company"
                keys.append((kind, event.applicant_ref))
        await self.subjects.prefetch(conn, keys)
        if self.keys is not None:
            await self.keys.prefetch(
                conn, (e.applicant.ref for e in events if isinstance(e, StepAssigned))
            )
        self.seen = set()
        if waits:
            rows = await conn.fetch(
                "SELECT event_id FROM inbox WHERE event_id = ANY($1::uuid[])", waits
            )
            self.seen = {r["event_id"] for r in rows}

    async def __call__(self, tx: Tx, event: Event) -> None:
        department = self.department
        ctx = StepContext(department.name, tx.conn, self.subjects, self.keys)
        if isinstance(event, StepAssigned):
            approval = department.waits_for(event)
            ready = approval is None or approval in self.seen
            await department.decide(ctx, tx, event, ready=ready, slow_s=self.slow_s)
        elif isinstance(event, StepOutcome) and event.department in department.learners:
            await department.learners[event.department](ctx, event)
            # A task later in this batch may wait for exactly this approval.
            self.seen.add(event.event_id)
        else:
            raise UnexpectedEventError(
                f"{department.name} has no use for {event.event_type} from {event.producer}"
            )

    async def save(self, conn: Connection) -> None:
        await self.subjects.flush(conn)


def register_subject_rules(
    department: Department,
    actions: Iterable[str],
    rules: SubjectRules[P, C],
    person_model: type[P],
    company_model: type[C],
) -> None:
    """Register pure rules for every action: the SDK loads the applicant's record (a
    person for natural applicants, a company for legal ones), calls
    ``rules(facts, person, company)`` and saves the records it returns."""

    async def decide(ctx: StepContext, task: StepAssigned) -> Decision:
        person: P | None = None
        company: C | None = None
        if task.applicant.kind == "natural":
            person = await ctx.load(person_model, "person", task.applicant.ref)
        else:
            company = await ctx.load(company_model, "company", task.applicant.ref)
        decision, person, company = rules(ctx.facts(task), person, company)
        if person is not None:
            await ctx.save("person", person)
        if company is not None:
            await ctx.save("company", company)
        return decision

    for action in sorted(actions):
        department.action(action)(decide)


def outcome_event(department: str, task: StepAssigned, decision: Decision) -> StepOutcome:
    """The outcome event that reports ``decision`` on ``task``."""
    common: dict[str, Any] = {
        **task.caused(),
        "producer": department,
        "step_index": task.step_index,
        "department": department,
        "action": task.action,
        "item_code": task.item_code,
        "applicant_ref": task.applicant.ref,
        "applicant_kind": task.applicant.kind,
        "review": task.review,
    }
    if isinstance(decision, Approve):
        return StepApproved(**common, reference=decision.reference, facts=dict(decision.facts))
    if isinstance(decision, Reject):
        return StepRejected(**common, reason_code=decision.reason_code, message=decision.message)
    if isinstance(decision, NeedsInfo):
        return StepNeedsInfo(**common, missing=decision.missing, message=decision.message)
    raise TypeError(f"not a decision: {decision!r}")


def department_topics(department: Department) -> Topics:
    """What a department adapter reads (its tasks, the outcomes of the departments it
    learns from), writes (its outcomes) and creates (those, and the dead-letter queues
    of what it reads), from the topology."""
    return Topics.of(department.name, [department.name], learns_from=department.learners)


def wire_department(department: Department, plumbing: Plumbing) -> ServiceContext:
    """A department adapter on opened plumbing: one consumer loop over what it reads."""
    processor = BatchProcessor(
        plumbing.settings,
        plumbing.pool,
        plumbing.writer,
        department.handler(
            DataKeys(
                load_centre_secret(plumbing.settings.privacy_key_path()),
                plumbing.settings.privacy_key_cache_s,
            ),
            slow_s=plumbing.settings.fault_slow_action_s,
        ),
        consumer_name=department.name,
        keys=plumbing.keys,
        first_topics=[dept_outcomes(d) for d in department.learners],
    )
    loop = ConsumerLoop(
        plumbing.settings,
        plumbing.topics.consumes,
        group_id=department.name,
        processor=processor,
        relay=plumbing.relay,
    )
    return plumbing.service(loops=[loop])


async def create_service(department: Department, settings: Settings) -> ServiceContext:
    """Build a department adapter: schema, topics, relay and its consumer loop."""
    plumbing = await open_service(
        department.name,
        settings,
        schema=department.name,
        migrations=[SDK_MIGRATIONS, *department.migrations],
        topics=department_topics(department),
    )
    return wire_department(department, plumbing)


def run(department: Department) -> None:
    """Run a department adapter as its process until SIGTERM/SIGINT (see
    :func:`shared.platform.runtime.run_service`)."""
    run_service(functools.partial(create_service, department))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m shared.department PACKAGE``: run the ``department`` declared in
    ``PACKAGE.department`` (for department packages that live outside ``services/``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.exit("usage: python -m shared.department PACKAGE  (e.g. services.hr_registration)")
    module = importlib.import_module(f"{args[0]}.department")
    department = getattr(module, "department", None)
    if not isinstance(department, Department):
        sys.exit(f"{args[0]}.department has no `department = Department(...)`")
    run(department)
