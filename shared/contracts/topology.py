"""The topology, declared once: every topic, which events it carries, the one service
that may write (sign) it, and who reads it.

Everything that names a topic derives from this page: the services' wiring (what each
consumes and emits), topic provisioning, the audit's signer rule and its event-log
pattern, the dead-letter and redrive header names, the bench. A name this page does not
declare is refused by :func:`spec` (and a unit test walks the code for topic names
that are not declared here).

Names here are logical; a deployment puts ``ONEDOOR_TOPIC_PREFIX`` in front of each
(``Settings.topic``). A department's topics are templates over its name
(``dept.{department}.tasks``): departments come from the catalogue, and one added later
fits the same rules without a change here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from shared.contracts.audit_events import AuditCheckpoint
from shared.contracts.events import (
    CaseAccepted,
    CaseAdvanced,
    CaseAwaitingInfo,
    CaseClosed,
    CaseRejected,
    CaseReviewFlagged,
    CaseRouted,
    DeadLetterRedriven,
    DeadlineMissed,
    DeadlineWarning,
    Event,
    PersonalDataAccessed,
    PersonErased,
    StepApproved,
    StepAssigned,
    StepNeedsInfo,
    StepRejected,
)

# Who signs and reads. A department is named by the ``{department}`` placeholder.
INTAKE: Final = "intake"
ROUTER: Final = "router"
AUDIT: Final = "audit"
DEADLINES: Final = "deadlines"
OPERATOR: Final = "operator"  # the signing identity of ``onedoor-audit dlq redrive``
DEPARTMENT: Final = "{department}"
OTHER_DEPARTMENTS: Final = "departments that learn from {department}"

CASES_ACCEPTED: Final = "cases.accepted"
CASES_ROUTING: Final = "cases.routing"
CASES_DEADLINES: Final = "cases.deadlines"
OPS_REDRIVES: Final = "ops.redrives"
# People's reads of personal data, one topic per service that shows it (one writer each).
ACCESS_INTAKE: Final = "access.intake"
ACCESS_AUDIT: Final = "access.audit"
# People erased (their data keys deleted): written by intake's outbox for onedoor-admin.
PRIVACY_ERASURES: Final = "privacy.erasures"
# The audit store's checkpoints: the audit vouches on the log for what it stored.
AUDIT_CHECKPOINTS: Final = "audit.checkpoints"
DEPT_TASKS: Final = "dept.{department}.tasks"
DEPT_OUTCOMES: Final = "dept.{department}.outcomes"
DLQ_SUFFIX: Final = ".dlq"

# Headers of a dead letter (``<topic>.dlq``): why it failed, where it came from.
DLQ_REASON: Final = "dlq.reason"
DLQ_ERROR: Final = "dlq.error"
DLQ_ORIGINAL_TOPIC: Final = "dlq.original.topic"
DLQ_ORIGINAL_PARTITION: Final = "dlq.original.partition"
DLQ_ORIGINAL_OFFSET: Final = "dlq.original.offset"
DLQ_ORIGINAL_HEADERS: Final = "dlq.original.headers"
DLQ_CONSUMER: Final = "dlq.consumer"
DLQ_FAILED_AT: Final = "dlq.failed_at"
# On a re-driven record: the exact bytes of the operator's DeadLetterRedriven event that
# allowed it, and that event's signature (as in SIGNATURE_HEADER, by the operator).
REDRIVE_HEADER: Final = "onedoor-redrive"
REDRIVE_SIGNATURE_HEADER: Final = "onedoor-redrive-signature"

_NAME = r"[a-z0-9_]+"


class UndeclaredTopicError(ValueError):
    """A topic name that the topology does not declare."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One event-log topic (or a template of them, over a department's name)."""

    template: str
    writer: str
    readers: tuple[str, ...]
    events: tuple[type[Event], ...]
    description: str

    def name(self, department: str | None = None) -> str:
        if DEPARTMENT in self.template:
            if not department:
                raise ValueError(f"{self.template} needs a department")
            return self.template.format(department=department)
        return self.template

    def pattern(self) -> str:
        """A regular expression for the names of this topic (without anchors)."""
        head, sep, tail = self.template.partition(DEPARTMENT)
        if not sep:
            return re.escape(self.template)
        return f"{re.escape(head)}(?P<department>{_NAME}){re.escape(tail)}"


TOPICS: Final[tuple[TopicSpec, ...]] = (
    TopicSpec(
        CASES_ACCEPTED,
        writer=INTAKE,
        readers=(ROUTER, AUDIT),
        events=(CaseAccepted,),
        description="a case accepted at a window or on the phone",
    ),
    TopicSpec(
        CASES_ROUTING,
        writer=ROUTER,
        readers=(INTAKE, AUDIT, DEADLINES),
        events=(
            CaseRouted,
            CaseRejected,
            CaseAdvanced,
            CaseAwaitingInfo,
            CaseClosed,
            CaseReviewFlagged,
        ),
        description="each case's routing slip: routed, advanced, waiting, closed, flagged",
    ),
    TopicSpec(
        DEPT_TASKS,
        writer=ROUTER,
        readers=(DEPARTMENT, AUDIT, DEADLINES),
        events=(StepAssigned,),
        description="the steps assigned to a department, one per step in slip order",
    ),
    TopicSpec(
        DEPT_OUTCOMES,
        writer=DEPARTMENT,
        readers=(ROUTER, AUDIT, DEADLINES, OTHER_DEPARTMENTS),
        events=(StepApproved, StepRejected, StepNeedsInfo),
        description="a department's outcome of each step it was assigned",
    ),
    TopicSpec(
        CASES_DEADLINES,
        writer=DEADLINES,
        readers=(AUDIT,),
        events=(DeadlineWarning, DeadlineMissed),
        description="a step with one working day left, or past its due time, undecided",
    ),
    TopicSpec(
        OPS_REDRIVES,
        writer=OPERATOR,
        readers=(AUDIT,),
        events=(DeadLetterRedriven,),
        description="an operator's signed decision to re-drive a dead letter",
    ),
    TopicSpec(
        ACCESS_INTAKE,
        writer=INTAKE,
        readers=(AUDIT,),
        events=(PersonalDataAccessed,),
        description="who read which case's personal data at intake (GET /cases/{id})",
    ),
    TopicSpec(
        ACCESS_AUDIT,
        writer=AUDIT,
        readers=(AUDIT,),
        events=(PersonalDataAccessed,),
        description="who read which case's history through the audit (HTTP and CLI)",
    ),
    TopicSpec(
        PRIVACY_ERASURES,
        writer=INTAKE,
        readers=(AUDIT,),
        events=(PersonErased,),
        description="a person erased: their data keys deleted (onedoor-admin erase)",
    ),
    TopicSpec(
        AUDIT_CHECKPOINTS,
        writer=AUDIT,
        readers=(AUDIT,),
        events=(AuditCheckpoint,),
        description="the audit store's signed checkpoints: per partition, the offset "
        "reached, the rows stored and their digest",
    ),
)

_MATCHERS = [(re.compile(f"^{t.pattern()}$"), t) for t in TOPICS]


def spec(topic: str) -> tuple[TopicSpec, str | None]:
    """The declaration of an event-log topic (logical name) and its department, if any.

    Raises:
        UndeclaredTopicError: the name is not an event-log topic of the topology.
    """
    for matcher, declared in _MATCHERS:
        match = matcher.match(topic)
        if match:
            return declared, match.groupdict().get("department")
    raise UndeclaredTopicError(
        f"{topic!r} is not a topic of the topology (shared/contracts/topology.py)"
    )


def is_declared(topic: str) -> bool:
    """Whether ``topic`` is an event-log topic of the topology or the DLQ of one."""
    try:
        spec(topic.removesuffix(DLQ_SUFFIX))
    except UndeclaredTopicError:
        return False
    return True


def writer(topic: str) -> str | None:
    """The one service allowed to sign records on ``topic``; ``None`` for a name the
    topology does not declare (a DLQ included: dead letters are copies, never signed
    anew)."""
    try:
        declared, department = spec(topic)
    except UndeclaredTopicError:
        return None
    return declared.writer.format(department=department) if department else declared.writer


def event_writers(event_type: str) -> frozenset[str] | None:
    """The services that sign events of ``event_type`` wherever they appear (several for
    PersonalDataAccessed, which each service that shows personal data records on a topic
    of its own); ``None`` for a department's outcome (which department it must be is the
    topic's business) or an undeclared type."""
    writers = {d.writer for d in TOPICS if any(c.event_type == event_type for c in d.events)}
    if not writers or any(DEPARTMENT in w for w in writers):
        return None
    return frozenset(writers)


def event_writer(event_type: str) -> str | None:
    """The one service that signs events of ``event_type`` wherever they appear; ``None``
    for a department's outcome, a type several services write (see
    :func:`event_writers`) or an undeclared type."""
    writers = event_writers(event_type)
    return next(iter(writers)) if writers is not None and len(writers) == 1 else None


def topic_of(event: type[Event] | Event) -> TopicSpec:
    """The declaration of the topic that carries events of this type (the first one, for
    a type several topics carry: see :func:`access_topic`)."""
    for declared in TOPICS:
        if type(event) in declared.events or event in declared.events:
            return declared
    raise UndeclaredTopicError(f"no topic carries {event.event_type}")


def access_topic(service: str) -> str:
    """The topic on which ``service`` records people's reads of personal data."""
    for declared in TOPICS:
        if PersonalDataAccessed in declared.events and declared.writer == service:
            return declared.template
    raise UndeclaredTopicError(f"{service} records no PersonalDataAccessed")


def access_topics() -> dict[str, str]:
    """Every access topic and the service that writes it."""
    return {d.template: d.writer for d in TOPICS if PersonalDataAccessed in d.events}


def dept_tasks(department: str) -> str:
    return DEPT_TASKS.format(department=department)


def dept_outcomes(department: str) -> str:
    return DEPT_OUTCOMES.format(department=department)


def dlq(topic: str) -> str:
    """The dead-letter queue of an event-log topic."""
    spec(topic)
    return f"{topic}{DLQ_SUFFIX}"


def event_log_topics(departments: Iterable[str]) -> list[str]:
    """Every event-log topic of a deployment with these departments (logical names)."""
    names: list[str] = []
    for declared in TOPICS:
        if DEPARTMENT in declared.template:
            names += [declared.name(d) for d in sorted(set(departments))]
        else:
            names.append(declared.template)
    return names


def all_topics(departments: Iterable[str]) -> list[str]:
    """Event-log topics and their dead-letter queues."""
    logs = event_log_topics(departments)
    return logs + [dlq(t) for t in logs]


def event_log_pattern(prefix: str = "") -> str:
    """A regular expression for every event-log topic of a deployment, departments added
    later included, DLQs excluded: what the audit subscribes to."""
    alternatives = "|".join(t.pattern().replace("?P<department>", "") for t in TOPICS)
    return rf"^{re.escape(prefix)}(?:{alternatives})$"


def reads(service: str, departments: Iterable[str], learns_from: Iterable[str] = ()) -> list[str]:
    """The event-log topics ``service`` reads in a deployment with these departments:
    a department reads its tasks and the outcomes of the departments it learns from."""
    names: list[str] = []
    departments = sorted(set(departments))
    for declared in TOPICS:
        if DEPARTMENT not in declared.template:
            if service in declared.readers:
                names.append(declared.template)
            continue
        names += [
            declared.name(department)
            for department in departments
            if service in declared.readers
            or (DEPARTMENT in declared.readers and service == department)
        ]
        if OTHER_DEPARTMENTS in declared.readers:
            names += [declared.name(d) for d in sorted(set(learns_from)) if d != service]
    return names


def writes(service: str, departments: Iterable[str]) -> list[str]:
    """The event-log topics ``service`` writes in a deployment with these departments."""
    names: list[str] = []
    for declared in TOPICS:
        if DEPARTMENT not in declared.template:
            if declared.writer == service:
                names.append(declared.template)
            continue
        names += [
            declared.name(department)
            for department in sorted(set(departments))
            if declared.writer.format(department=department) == service
        ]
    return names
