"""The brokers' ACLs, derived from the topology: each principal may touch only its topics.

Every service connects to Kafka as its own principal (``User:<service>``) and the brokers
run an authorizer that refuses whatever no ACL allows (``allow.everyone.if.no.acl.found=
false``). The ACLs are computed here from what each service reads, writes and creates
(``shared.platform.runtime.Topics``, itself derived from ``shared.contracts.topology``);
nothing else grants a right:

- READ on each topic it consumes, and on its consumer group (``Settings.group``);
- WRITE on each topic it emits, and on the dead-letter queue of each topic it consumes
  (its consumer loop sets bad records aside there) or emits (its relay sets aside the
  records the broker refuses);
- CREATE, DESCRIBE and DESCRIBE_CONFIGS on each topic it provisions at start-up (its
  ``ensure_topics`` lists them and checks their size limit);
- the operator (``onedoor-audit dlq``) READs every dead-letter queue and ``ops.redrives``
  and WRITEs ``ops.redrives`` and every event-log topic: a re-drive puts a dead letter back
  on its original topic, which its consumer honours only with the operator's signature.

So a department reads only its own tasks (and the outcomes of the departments it learns
from) and writes only its own outcomes; intake writes only ``cases.accepted``; the audit
writes only the dead-letter queues of what it reads. Producers are idempotent, which
Kafka allows to a principal that may WRITE some topic; no cluster right is granted.

All bindings are LITERAL names under the deployment's topic prefix (a prefixed pattern
on ``cases.accepted`` would also match ``cases.accepted.dlq``). The stack's own ``admin``
principal (a super user of the brokers) applies them: ``shared.messaging.principals``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from shared.contracts import topology


class Resource(IntEnum):
    """Kafka's ACL resource types (the wire codes)."""

    TOPIC = 2
    GROUP = 3


class Operation(IntEnum):
    """Kafka's ACL operations (the wire codes)."""

    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE = 8
    DESCRIBE_CONFIGS = 10


class ServiceTopics(Protocol):
    """What a service reads, writes and creates (``shared.platform.runtime.Topics``)."""

    @property
    def consumes(self) -> tuple[str, ...]: ...

    @property
    def emits(self) -> tuple[str, ...]: ...

    @property
    def provisions(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True, order=True)
class Binding:
    """One ALLOW rule: ``principal`` may do ``operation`` on the resource named ``name``
    (a deployed name: topic prefix included)."""

    principal: str
    resource: Resource
    name: str
    operation: Operation

    def __str__(self) -> str:
        return f"User:{self.principal} {self.operation.name} {self.resource.name} {self.name}"


def service_bindings(prefix: str, service: str, topics: ServiceTopics) -> set[Binding]:
    """What ``service`` may do, from what it consumes, emits and provisions."""

    def on(name: str, *operations: Operation, resource: Resource = Resource.TOPIC) -> set[Binding]:
        return {Binding(service, resource, f"{prefix}{name}", op) for op in operations}

    granted: set[Binding] = set()
    for name in topics.consumes:
        granted |= on(name, Operation.READ)
        granted |= on(topology.dlq(name), Operation.WRITE)
    for name in topics.emits:
        granted |= on(name, Operation.WRITE)
        granted |= on(topology.dlq(name), Operation.WRITE)
    for name in topics.provisions:
        granted |= on(name, Operation.CREATE, Operation.DESCRIBE, Operation.DESCRIBE_CONFIGS)
    if topics.consumes:
        # Settings.group(service): the consumer group id, prefixed like the topics.
        granted |= on(service, Operation.READ, resource=Resource.GROUP)
    return granted


def operator_bindings(prefix: str, departments: Iterable[str]) -> set[Binding]:
    """What ``onedoor-audit dlq`` may do: read every dead-letter queue and the redrives,
    record a redrive, and put a dead letter back on its original topic."""
    operator = topology.OPERATOR
    granted = {
        Binding(operator, Resource.TOPIC, f"{prefix}{topology.OPS_REDRIVES}", op)
        for op in (Operation.READ, Operation.WRITE)
    }
    for name in topology.event_log_topics(departments):
        granted.add(Binding(operator, Resource.TOPIC, f"{prefix}{name}", Operation.WRITE))
        granted.add(
            Binding(operator, Resource.TOPIC, f"{prefix}{topology.dlq(name)}", Operation.READ)
        )
    return granted


def bindings(
    prefix: str, services: Mapping[str, ServiceTopics], departments: Iterable[str]
) -> list[Binding]:
    """Every ACL of a deployment whose topics carry ``prefix``: each service's (by the
    topics its builder derives from the topology) and the operator's."""
    granted = operator_bindings(prefix, departments)
    for service, topics in services.items():
        granted |= service_bindings(prefix, service, topics)
    return sorted(granted)


def principals(services: Iterable[str]) -> list[str]:
    """The principals of a deployment: its services and the operator."""
    return sorted({*services, topology.OPERATOR})
