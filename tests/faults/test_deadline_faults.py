"""The deadline service killed while warnings are due: each notice is still given exactly
once per step (issue 20). A working day lasts two seconds here
(``ONEDOOR_TEST_WORKING_DAY_SECONDS``), so promises fall due within the test; no
department runs, so every step stays undecided and owes a warning and a miss."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from uuid import UUID

import pytest

from services.audit.verifier.run import verify_log
from shared.contracts.events import (
    DeadlineNotice,
    EventDecodeError,
    StepAssigned,
    parse_event,
)
from shared.contracts.topology import CASES_DEADLINES, dept_tasks
from tests.conftest import Stack
from tests.e2e.harness import Pipeline, run_services
from tests.faults.load import Load, read_topic
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(420)]

SERVICES = ["intake", "router", "deadlines"]
DEPARTMENTS = ("hr_registration", "social_security")
Key = tuple[UUID, int, str]


@pytest.fixture
def pipeline(
    stack: Stack, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    with run_services(
        {name: ["-m", f"services.{name}"] for name in SERVICES},
        kafka=stack.kafka,
        database_url=database_url,
        logs=tmp_path_factory.mktemp("deadline-faults"),
        extra_env={
            "ONEDOOR_TEST_WORKING_DAY_SECONDS": "2",
            "ONEDOOR_DEADLINES_POLL_S": "0.3",
            "ONEDOOR_DEADLINES_GRACE_S": "0.5",
        },
        # The first process dies (SIGKILL) in its third transaction that gives notices,
        # between writing them and committing: none of that transaction may be lost.
        service_env={
            "deadlines": {
                "ONEDOOR_FAULT_CRASH_POINT": "deadlines_before_commit",
                "ONEDOOR_FAULT_CRASH_AFTER": "3",
            }
        },
    ) as pipeline:
        yield pipeline


async def owed(pipeline: Pipeline) -> set[Key]:
    """What the tasks on the log owe: a miss for each step, a warning when it has a
    warning time before its due time."""
    wanted: set[Key] = set()
    for department in DEPARTMENTS:
        for record in await read_topic(pipeline.settings, dept_tasks(department)):
            task = parse_event(record.value)
            assert isinstance(task, StepAssigned)
            wanted.add((task.case_id, task.step_index, "DeadlineMissed"))
            if task.warn_at is not None and task.warn_at < task.due_by:
                wanted.add((task.case_id, task.step_index, "DeadlineWarning"))
    return wanted


async def given(pipeline: Pipeline) -> dict[Key, set[UUID]]:
    """The notices on the log: distinct event ids per step and kind (a relay's resend of
    one event is one notice; two event ids for one step and kind would be two)."""
    notices: dict[Key, set[UUID]] = defaultdict(set)
    for record in await read_topic(pipeline.settings, CASES_DEADLINES):
        event = parse_event(record.value)
        assert not isinstance(event, EventDecodeError)
        assert isinstance(event, DeadlineNotice), event
        notices[(event.case_id, event.step_index, event.event_type)].add(event.event_id)
    return notices


async def test_deadline_service_killed_while_warnings_are_due(pipeline: Pipeline) -> None:
    load = Load(pipeline, rate_per_s=15)
    load.start()
    await load.accepted_more(40, "accepted before the fault")
    # The injected crash: SIGKILL inside the clock's transaction.
    await wait_for(lambda: pipeline.procs["deadlines"].poll() is not None, 90, "crash point")
    await load.accepted_more(20, "accepted while the deadline service is down")
    pipeline.start("deadlines", extra_env={"ONEDOOR_FAULT_CRASH_POINT": ""})
    seen = len(await given(pipeline))

    async def more_given() -> bool:
        return len(await given(pipeline)) > seen + 5

    await wait_for(more_given, 90, "notices given after the restart")
    # kill -9 again, from outside, while the load's later warnings fall due.
    pipeline.kill("deadlines")
    await load.accepted_more(10, "accepted during the second outage")
    await load.stop()
    pipeline.start("deadlines", extra_env={"ONEDOOR_FAULT_CRASH_POINT": ""})

    wanted = await owed(pipeline)
    notices: dict[Key, set[UUID]] = {}

    async def all_given() -> bool:
        notices.clear()
        notices.update(await given(pipeline))
        return wanted <= notices.keys()

    # The longest promise in the catalogue is 30 working days: 60 s here.
    await wait_for(all_given, 180, "every warning and miss given", interval=1.0)
    twice = {k: ids for k, ids in notices.items() if len(ids) > 1}
    unowed = set(notices) - wanted
    warnings = sum(1 for k in notices if k[2] == "DeadlineWarning")
    print(  # the figures the issue asks to quote
        f"FAULT deadline service kill -9: cases={len(load.accepted)} owed={len(wanted)} "
        f"given={len(notices)} warnings={warnings} twice={len(twice)} unowed={len(unowed)}"
    )
    assert twice == {}
    assert unowed == set()
    assert warnings > 0
    # Every notice owed more than five seconds ago is on the log: verify agrees.
    judged = pipeline.settings.model_copy(update={"audit_stall_after_s": 5.0})
    report = await verify_log(judged, check_signatures=True, processes=1)
    deadline_faults = [v for v in report.violations if v.kind.startswith("deadline_")]
    assert deadline_faults == []
    assert sorted(pipeline.alive()) == sorted(SERVICES)
