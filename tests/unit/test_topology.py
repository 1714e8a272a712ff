"""The topology declared once (shared.contracts.topology), and nothing used beside it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from shared.contracts import topology
from shared.contracts.events import registry
from shared.messaging.topics import ensure_topics
from shared.platform.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# What a topic name looks like in the code: a dotted lower-case name starting like one
# of the topology's families (cases., dept., ops., access.), with or without the DLQ suffix.
_TOPIC_LIKE = re.compile(r"^(?:cases|dept|ops|access)\.[a-z0-9_.]+$")


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """Every string constant, and every f-string with each placeholder read as ``x``
    (``f"dept.{name}.tasks"`` is checked as ``dept.x.tasks``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    in_fstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = []
            for part in node.values:
                in_fstrings.add(id(part))
                text = part.value if isinstance(part, ast.Constant) else None
                parts.append(text if isinstance(text, str) else "x")
            found.append((node.lineno, "".join(parts)))
    found += [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in in_fstrings
    ]
    return found


def test_every_topic_named_in_the_code_is_declared() -> None:
    undeclared = []
    for folder in ("services", "shared", "deploy", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, value in _string_constants(path):
                if _TOPIC_LIKE.match(value) and not topology.is_declared(value):
                    undeclared.append(f"{path.relative_to(ROOT)}:{line}: {value}")
    assert undeclared == []


def test_the_scan_would_see_an_undeclared_topic(tmp_path: Path) -> None:
    source = tmp_path / "rogue.py"
    source.write_text(
        'TOPIC = "cases.shadow"\nOK = "dept.parks.tasks.dlq"\n'
        'ROGUE = f"dept.{name}.inbox"\nFINE = f"dept.{name}.outcomes"\n',
        encoding="utf-8",
    )
    found = sorted(v for _, v in _string_constants(source) if _TOPIC_LIKE.match(v))
    assert found == ["cases.shadow", "dept.parks.tasks.dlq", "dept.x.inbox", "dept.x.outcomes"]
    assert [topology.is_declared(v) for v in found] == [False, True, False, True]


async def test_provisioning_refuses_an_undeclared_topic() -> None:
    # Refused before any broker is asked: the address below is never dialled.
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:9")
    with pytest.raises(topology.UndeclaredTopicError, match=r"cases\.shadow"):
        await ensure_topics(settings, [topology.CASES_ACCEPTED, "cases.shadow"])


def test_every_event_type_travels_on_exactly_one_topic() -> None:
    """Reads of personal data aside: each service that shows personal data records them
    on a topic of its own (one writer per topic)."""
    carried = [cls.event_type for spec in topology.TOPICS for cls in spec.events]
    reads = "PersonalDataAccessed"
    assert carried.count(reads) == len(topology.access_topics()) == 2
    assert sorted(t for t in carried if t != reads) == sorted(
        t for t in registry.classes() if t != reads
    )


def test_writers_follow_the_declaration() -> None:
    assert topology.writer("cases.accepted") == "intake"
    assert topology.writer("cases.routing") == "router"
    assert topology.writer("ops.redrives") == "operator"
    assert topology.writer("dept.parks.tasks") == "router"
    assert topology.writer("dept.parks.outcomes") == "parks"
    assert topology.writer("dept..outcomes") is None
    assert topology.writer("dept.parks.outcomes.dlq") is None
    assert topology.writer("cases.shadow") is None


def test_event_writers() -> None:
    assert topology.event_writer("CaseAccepted") == "intake"
    assert topology.event_writer("CaseAwaitingInfo") == "router"
    assert topology.event_writer("StepAssigned") == "router"
    assert topology.event_writer("StepApproved") is None  # the topic's department
    assert topology.event_writer("DeadLetterRedriven") == "operator"
    # Each service that shows personal data records the reads on its own topic.
    assert topology.event_writer("PersonalDataAccessed") is None
    assert topology.event_writers("PersonalDataAccessed") == frozenset({"intake", "audit"})
    assert topology.event_writers("CaseAccepted") == frozenset({"intake"})
    assert topology.event_writers("StepApproved") is None
    assert topology.access_topic("intake") == "access.intake"
    assert topology.access_topic("audit") == "access.audit"
    assert topology.writer("access.audit") == "audit"
    with pytest.raises(topology.UndeclaredTopicError):
        topology.access_topic("router")


def test_undeclared_names_are_refused() -> None:
    with pytest.raises(topology.UndeclaredTopicError, match=r"cases\.shadow"):
        topology.spec("cases.shadow")
    with pytest.raises(topology.UndeclaredTopicError):
        topology.dlq("cases.shadow")


def test_the_event_log_pattern_takes_every_log_topic_and_no_dlq() -> None:
    pattern = re.compile(topology.event_log_pattern("t1-"))
    logs = topology.event_log_topics(["hr_registration", "parks"])
    assert all(pattern.match(f"t1-{name}") for name in logs)
    assert pattern.match("t1-dept.new_dept.outcomes")  # a department added later
    assert not any(pattern.match(f"t1-{topology.dlq(name)}") for name in logs)
    assert not pattern.match("dept.parks.tasks")  # another deployment's prefix
    assert not pattern.match("t1-cases.shadow")


def test_who_reads_and_writes_what() -> None:
    departments = ["hr_registration", "social_security"]
    assert topology.reads("router", departments) == [
        "cases.accepted",
        "dept.hr_registration.outcomes",
        "dept.social_security.outcomes",
    ]
    assert topology.reads("intake", departments) == ["cases.routing"]
    assert topology.reads("social_security", departments, learns_from=["hr_registration"]) == [
        "dept.social_security.tasks",
        "dept.hr_registration.outcomes",
    ]
    assert topology.writes("router", departments) == [
        "cases.routing",
        "dept.hr_registration.tasks",
        "dept.social_security.tasks",
    ]
    assert topology.writes("hr_registration", departments) == ["dept.hr_registration.outcomes"]
    assert topology.writes("intake", departments) == [
        "cases.accepted",
        "access.intake",
        "privacy.erasures",
    ]
    assert topology.writes("audit", departments) == ["access.audit", "audit.checkpoints"]
    every_log = set(topology.event_log_topics(departments))
    assert set(topology.reads("audit", departments)) == every_log
