"""How services are wired and run, without a broker or a database: each service's topics
come from the topology, a built service is immutable, and the one runner starts and
stops a service the same way for all of them."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import structlog
from fastapi import FastAPI

from services.audit import main as audit
from services.audit.ingest import event_log_pattern
from services.catalogue import default_catalogue
from services.deadlines import main as deadlines
from services.hr_registration.department import department as hr_registration
from services.intake import main as intake
from services.intake.api import CasesFront
from services.router import main as router
from services.social_security.department import department as social_security
from shared.contracts import topology
from shared.contracts.catalogue import Catalogue
from shared.department.adapter import department_topics, wire_department
from shared.messaging.outbox import OutboxRelay, OutboxWriter
from shared.messaging.signing import PublicKeys
from shared.messaging.testing import signer_for
from shared.platform.metrics import ConsumerMetrics, ServiceMetrics
from shared.platform.privacy_keys import generate_privacy_key
from shared.platform.runtime import (
    Builder,
    Plumbing,
    RunningService,
    ServiceContext,
    Topics,
    serve,
)
from shared.platform.settings import Settings
from shared.platform.tokens import generate_key

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = default_catalogue([])
DEPARTMENTS = sorted(CATALOGUE.departments())
DEPARTMENT_PACKAGES = {d.name: d for d in (hr_registration, social_security)}


def all_topics() -> dict[str, Topics]:
    """Every service's topics, as its builder derives them."""
    return {
        topology.INTAKE: intake.topics(DEPARTMENTS),
        topology.ROUTER: router.topics(DEPARTMENTS),
        topology.AUDIT: audit.topics(DEPARTMENTS),
        topology.DEADLINES: deadlines.topics(DEPARTMENTS),
        **{name: department_topics(d) for name, d in DEPARTMENT_PACKAGES.items()},
    }


def test_the_departments_of_the_catalogue_are_the_department_packages() -> None:
    assert set(DEPARTMENTS) == set(DEPARTMENT_PACKAGES)


@pytest.mark.parametrize("service", sorted(all_topics()))
def test_a_service_reads_and_writes_what_the_topology_declares(service: str) -> None:
    topics = all_topics()[service]
    learners = DEPARTMENT_PACKAGES[service].learners if service in DEPARTMENT_PACKAGES else {}
    assert topics.consumes == tuple(topology.reads(service, DEPARTMENTS, learns_from=learners))
    assert topics.emits == tuple(topology.writes(service, DEPARTMENTS))


def test_the_topics_are_the_ones_the_pipeline_runs_on() -> None:
    # The topology's answers spelled out, so a change to reads/writes shows here too.
    topics = all_topics()
    tasks, outcomes = topology.dept_tasks, topology.dept_outcomes
    assert topics["intake"].consumes == ("cases.routing",)
    assert topics["intake"].emits == ("cases.accepted", "access.intake", "privacy.erasures")
    assert topics["router"].consumes == (
        "cases.accepted",
        outcomes("hr_registration"),
        outcomes("social_security"),
    )
    assert topics["router"].emits == (
        "cases.routing",
        tasks("hr_registration"),
        tasks("social_security"),
    )
    assert topics["social_security"].consumes == (
        tasks("social_security"),
        outcomes("hr_registration"),  # it learns from HR's outcomes
    )
    assert topics["hr_registration"].consumes == (tasks("hr_registration"),)
    assert topics["hr_registration"].emits == (outcomes("hr_registration"),)
    assert topics["audit"].emits == ("access.audit", "audit.checkpoints")
    assert set(topics["audit"].consumes) == set(topology.event_log_topics(DEPARTMENTS))


def test_every_topic_read_is_written_by_exactly_one_service_or_the_operator() -> None:
    topics = all_topics()
    writers: dict[str, list[str]] = {}
    for service, t in topics.items():
        for name in t.emits:
            writers.setdefault(name, []).append(service)
    assert all(len(w) == 1 for w in writers.values()), writers
    unwritten = {name for t in topics.values() for name in t.consumes} - set(writers)
    assert unwritten == {topology.OPS_REDRIVES}  # signed by `onedoor-audit dlq redrive`


@pytest.mark.parametrize("service", sorted(all_topics()))
def test_a_service_creates_what_it_reads_and_writes_and_its_dead_letter_queues(
    service: str,
) -> None:
    topics = all_topics()[service]
    needed = {*topics.consumes, *topics.emits, *(topology.dlq(t) for t in topics.consumes)}
    assert needed <= set(topics.provisions)
    assert len(set(topics.provisions)) == len(topics.provisions)
    if service in ("intake", "router", "audit"):  # whichever starts first creates them all
        assert set(topics.provisions) == set(topology.all_topics(DEPARTMENTS))


def test_the_audits_pattern_takes_every_topic_it_reads_and_no_dead_letter_queue() -> None:
    settings = Settings(topic_prefix="p1.")
    pattern = re.compile(event_log_pattern(settings))
    for name in audit.topics(DEPARTMENTS).consumes:
        assert pattern.match(settings.topic(name)), name
        assert not pattern.match(settings.topic(topology.dlq(name))), name
    assert pattern.match(settings.topic(topology.dept_outcomes("parks")))  # added later


# --------------------------------------------------------------------------- wiring


class NoPool:
    """A pool that is never opened: wiring must not touch the database."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the wiring used the pool ({name})")


def plumbing(name: str, topics: Topics, tmp_path: Path) -> Plumbing:
    settings = Settings(keys_dir=tmp_path)
    pool = cast(Any, NoPool())
    signer = signer_for(tmp_path, name)
    return Plumbing(
        name=name,
        settings=settings,
        log=structlog.get_logger(name),
        pool=pool,
        signer=signer,
        keys=PublicKeys.load(tmp_path),
        writer=OutboxWriter(signer),
        relay=OutboxRelay(settings, pool, name=name),
        topics=topics,
    )


def wired(service: str, tmp_path: Path, catalogue: Catalogue = CATALOGUE) -> ServiceContext:
    topics = all_topics()[service]
    opened = plumbing(service, topics, tmp_path)
    if service not in ("router", "audit"):  # made ahead, as the stack does
        generate_privacy_key(opened.settings.privacy_key_path())
    if service == "intake":
        generate_key(opened.settings.token_key_path())  # made ahead, as the stack does
        return intake.wire(opened, catalogue)
    if service == "router":
        return router.wire(opened, catalogue)
    if service == "audit":
        return audit.wire(opened)
    if service == "deadlines":
        return deadlines.wire(opened)
    return wire_department(DEPARTMENT_PACKAGES[service], opened)


@pytest.mark.parametrize("service", sorted(all_topics()))
def test_a_built_service_is_immutable(service: str, tmp_path: Path) -> None:
    ctx = wired(service, tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.loops = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.topics.consumes = ()  # type: ignore[misc]
    for field in dataclasses.fields(ctx):
        value = getattr(ctx, field.name)
        assert not isinstance(value, list | dict | set), f"{field.name} can change"
    assert ctx.topics == all_topics()[service]
    assert [loop.name for loop in ctx.loops] == [f"consumer:{service}"]


@pytest.mark.parametrize("service", sorted(all_topics()))
def test_intake_and_audit_serve_their_app_the_others_the_health_endpoint(
    service: str, tmp_path: Path
) -> None:
    ctx = wired(service, tmp_path)
    metrics = ServiceMetrics([loop.metrics for loop in ctx.loops], ctx.relay)
    live = RunningService(ctx, asyncio.Event(), (), 0.0, metrics)
    app = live.http_app()
    if service == "intake":
        assert isinstance(app, CasesFront)
        assert isinstance(app.app, FastAPI)
    elif service == "audit":
        assert isinstance(app, FastAPI)
    else:
        assert ctx.http is None
        assert app is None


# --------------------------------------------------------------------------- running


class FakeRelay:
    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.last_error: str | None = None
        self.published = self.retries = 0
        self.dead_letter_reasons: dict[str, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.events.append("relay drained")

    async def backlog(self) -> int:
        return 0


class FakeLoop:
    def __init__(self, events: list[str], *, dies: bool) -> None:
        self.events = events
        self.dies = dies
        self.name = "consumer:fake"
        self.last_error: str | None = None
        self.records = self.batches = 0
        self.metrics = ConsumerMetrics("fake", "")

    async def run(self, stop: asyncio.Event) -> None:
        if self.dies:
            await asyncio.sleep(0)  # dies once the runner is waiting on it
            raise RuntimeError("the loop died")
        await stop.wait()
        self.events.append("batch committed")

    async def lag(self) -> int | None:
        return None


class FakePool:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def close(self) -> None:
        self.events.append("pool closed")


def fake_service(events: list[str], *, dies: bool = False) -> ServiceContext:
    async def close_http_side() -> None:
        events.append("acceptor closed")

    return ServiceContext(
        name="fake",
        settings=Settings(),
        log=structlog.get_logger("fake"),
        pool=cast(Any, FakePool(events)),
        relay=cast(Any, FakeRelay(events)),
        topics=Topics((), (), ()),
        loops=(cast(Any, FakeLoop(events, dies=dies)),),
        on_close=(close_http_side,),
    )


def fake_builder(*, dies: bool) -> Builder:
    """For ``run_service`` in a child process."""

    async def build(_: Settings) -> ServiceContext:
        structlog.contextvars.bind_contextvars(service="fake")  # as configure_logging does
        return fake_service([], dies=dies)

    return build


@pytest.fixture
def unfrozen() -> Iterator[None]:
    # Starting a service freezes the heap (freeze_heap); give the test runner its own back.
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
async def test_a_stop_drains_the_service_in_order() -> None:
    events: list[str] = []
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, stop.set)
    died = await asyncio.wait_for(serve(fake_service(events), stop), 10)
    assert died is False
    assert events[0] == "acceptor closed"  # nothing new comes in once the loops stop
    assert sorted(events[1:3]) == ["batch committed", "relay drained"]
    assert events[3:] == ["pool closed"]


@pytest.mark.usefixtures("unfrozen")
async def test_a_task_that_dies_stops_the_service_and_is_reported() -> None:
    events: list[str] = []
    died = await asyncio.wait_for(serve(fake_service(events, dies=True), asyncio.Event()), 10)
    assert died is True
    assert events[-1] == "pool closed"
    assert "relay drained" in events


def _child(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_line(proc: subprocess.Popen[str], text: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if text in line:
            return line
    pytest.fail(f"the child ended (exit {proc.wait()}) before printing {text!r}")


def test_a_stop_during_start_up_exits_0() -> None:
    proc = _child(
        "import asyncio\n"
        "from shared.platform.runtime import run_service\n"
        "async def build(settings):\n"
        "    print('building', flush=True)\n"
        "    await asyncio.Event().wait()  # Kafka never comes up\n"
        "run_service(build)\n"
    )
    _wait_for_line(proc, "building")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_sigterm_stops_a_running_service_with_exit_0() -> None:
    proc = _child(
        "from shared.platform.runtime import run_service\n"
        "from tests.unit.test_service_wiring import fake_builder\n"
        "run_service(fake_builder(dies=False))\n"
    )
    started = _wait_for_line(proc, "service started")
    assert "service=fake" in started  # what the build bound reaches the running service
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert proc.stdout is not None
    assert "service stopped" in proc.stdout.read()


def test_a_service_whose_task_died_exits_1() -> None:
    proc = _child(
        "from shared.platform.runtime import run_service\n"
        "from tests.unit.test_service_wiring import fake_builder\n"
        "run_service(fake_builder(dies=True))\n"
    )
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 1, out
    assert "a service task died" in out
