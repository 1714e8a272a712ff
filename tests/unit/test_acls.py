"""The ACLs the brokers get, computed from the topology: who may read, write and create
what (shared/messaging/acls.py). The broker's own refusals: tests/integration/test_kafka_acls.py."""

from __future__ import annotations

import pytest

from deploy.kafka_security import deployment_bindings
from shared.contracts import topology
from shared.contracts.topology import (
    ACCESS_AUDIT,
    ACCESS_INTAKE,
    AUDIT,
    CASES_ACCEPTED,
    CASES_DEADLINES,
    CASES_ROUTING,
    DEADLINES,
    INTAKE,
    OPERATOR,
    OPS_REDRIVES,
    PRIVACY_ERASURES,
    ROUTER,
    dept_outcomes,
    dept_tasks,
    dlq,
    event_log_topics,
)
from shared.messaging.acls import Binding, Operation, Resource

pytestmark = pytest.mark.unit

HR, SS = "hr_registration", "social_security"
PREFIX = "p1."
BINDINGS = deployment_bindings(PREFIX, [HR, SS])


def topics(principal: str, operation: Operation, bindings: list[Binding] = BINDINGS) -> set[str]:
    """The logical topic names ``principal`` may ``operation``."""
    return {
        b.name.removeprefix(PREFIX)
        for b in bindings
        if b.principal == principal and b.operation == operation and b.resource == Resource.TOPIC
    }


def test_a_department_reads_its_tasks_and_writes_its_outcomes_only() -> None:
    assert topics(HR, Operation.READ) == {dept_tasks(HR)}
    assert topics(HR, Operation.WRITE) == {
        dept_outcomes(HR),
        dlq(dept_outcomes(HR)),
        dlq(dept_tasks(HR)),
    }
    # Social security also reads the outcomes of HR, which it learns from.
    assert topics(SS, Operation.READ) == {dept_tasks(SS), dept_outcomes(HR)}
    assert topics(SS, Operation.WRITE) == {
        dept_outcomes(SS),
        dlq(dept_outcomes(SS)),
        dlq(dept_tasks(SS)),
        dlq(dept_outcomes(HR)),
    }
    assert CASES_ACCEPTED not in topics(SS, Operation.READ) | topics(HR, Operation.READ)


def test_intake_writes_only_cases_accepted_and_its_reads_and_reads_the_routing_slip() -> None:
    assert topics(INTAKE, Operation.WRITE) == {
        CASES_ACCEPTED,
        ACCESS_INTAKE,  # its PersonalDataAccessed records
        dlq(ACCESS_INTAKE),
        PRIVACY_ERASURES,  # onedoor-admin erase's PersonErased, through its outbox
        dlq(PRIVACY_ERASURES),
        dlq(CASES_ACCEPTED),
        dlq(CASES_ROUTING),
    }
    assert topics(INTAKE, Operation.READ) == {CASES_ROUTING}


def test_the_router_reads_what_it_routes_and_writes_what_it_emits() -> None:
    assert topics(ROUTER, Operation.READ) == {CASES_ACCEPTED, dept_outcomes(HR), dept_outcomes(SS)}
    emits = {CASES_ROUTING, dept_tasks(HR), dept_tasks(SS)}
    reads = topics(ROUTER, Operation.READ)
    assert topics(ROUTER, Operation.WRITE) == emits | {dlq(t) for t in emits | reads}


def test_the_audit_reads_every_event_topic_and_writes_only_its_reads_and_dead_letters() -> None:
    assert topics(AUDIT, Operation.READ) == set(event_log_topics([HR, SS]))
    # its PersonalDataAccessed, and the checkpoints of its store
    writes = topics(AUDIT, Operation.WRITE) - {ACCESS_AUDIT, topology.AUDIT_CHECKPOINTS}
    assert writes
    assert all(t.endswith(topology.DLQ_SUFFIX) for t in writes)


def test_every_event_topic_has_its_one_writer_and_the_operators_redrive() -> None:
    for topic in event_log_topics([HR, SS]):
        writers = {
            b.principal
            for b in BINDINGS
            if b.name == PREFIX + topic and b.operation == Operation.WRITE
        }
        assert writers == {topology.writer(topic), OPERATOR}, topic


def test_the_operator_reads_dead_letters_and_records_redrives() -> None:
    assert topics(OPERATOR, Operation.READ) == {OPS_REDRIVES} | {
        dlq(t) for t in event_log_topics([HR, SS])
    }
    assert OPS_REDRIVES in topics(OPERATOR, Operation.WRITE)
    assert not topics(OPERATOR, Operation.CREATE)


def test_each_consumer_reads_its_own_group_and_nobody_may_touch_the_cluster() -> None:
    groups = {(b.principal, b.name) for b in BINDINGS if b.resource == Resource.GROUP}
    assert groups == {(s, PREFIX + s) for s in (INTAKE, ROUTER, AUDIT, DEADLINES, HR, SS)}
    assert {b.resource for b in BINDINGS} == {Resource.TOPIC, Resource.GROUP}
    assert all(b.name.startswith(PREFIX) for b in BINDINGS)


def test_a_service_may_create_what_it_provisions_and_describe_it() -> None:
    for principal in (INTAKE, ROUTER, AUDIT):  # whichever starts first creates them all
        assert topics(principal, Operation.CREATE) == set(topology.all_topics([HR, SS]))
    assert topics(HR, Operation.CREATE) == {
        dept_tasks(HR),
        dlq(dept_tasks(HR)),
        dept_outcomes(HR),
    }
    for b in BINDINGS:
        if b.operation == Operation.CREATE:
            assert Binding(b.principal, b.resource, b.name, Operation.DESCRIBE_CONFIGS) in BINDINGS


def test_a_department_added_later_gets_its_own_rights_and_the_audits() -> None:
    wider = deployment_bindings(PREFIX, [HR, SS, "parks"])
    assert topics("parks", Operation.READ, wider) == {dept_tasks("parks")}
    assert dept_outcomes("parks") in topics("parks", Operation.WRITE, wider)
    assert dept_tasks("parks") in topics(ROUTER, Operation.WRITE, wider)
    assert {dept_tasks("parks"), dept_outcomes("parks")} <= topics(AUDIT, Operation.READ, wider)
    assert dept_outcomes("parks") not in topics(HR, Operation.READ, wider)


def test_the_deadline_service_reads_tasks_outcomes_and_closes_and_writes_its_notices() -> None:
    assert topics(DEADLINES, Operation.READ) == {
        CASES_ROUTING,
        *(dept_tasks(d) for d in (HR, SS)),
        *(dept_outcomes(d) for d in (HR, SS)),
    }
    reads = topics(DEADLINES, Operation.READ)
    assert topics(DEADLINES, Operation.WRITE) == {CASES_DEADLINES, dlq(CASES_DEADLINES)} | {
        dlq(t) for t in reads
    }
    assert CASES_ACCEPTED not in reads
