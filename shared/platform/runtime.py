"""How every service starts, runs and stops: one shape for all of them.

A service's ``build(settings)`` opens what it needs (:func:`open_service`: logging,
migrations of its schema, its topics, the pool, the signing key, the outbox relay) and
returns a finished, immutable :class:`ServiceContext`: what it consumes (its consumer
loops), what it emits (its relay, the topics it writes), and its HTTP app if it has one.
:func:`run_service` is every ``__main__``: signal handlers first, then the build, the
relay and the loops, HTTP (the service's app under uvicorn, or the JSON health endpoint
on ``ONEDOOR_HEALTH_PORT``), and on SIGTERM or SIGINT a clean stop: each loop finishes
and commits the batch in hand, the relay publishes what is pending, the pool closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import gc
import os
import random
import signal
import socket
import sys
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import structlog
import uvicorn
from aiokafka.errors import KafkaError
from starlette.types import ASGIApp

from shared.contracts import topology
from shared.messaging import MESSAGING_MIGRATIONS
from shared.messaging.consumer import ConsumerLoop
from shared.messaging.kafka import KafkaPrincipalError
from shared.messaging.outbox import OutboxRelay, OutboxWriter
from shared.messaging.signing import PublicKeys, Signer, SigningKeyError
from shared.messaging.topics import ensure_topics
from shared.platform import aio, http_server, ops, tracing
from shared.platform.db import create_pool, migrate_dsn
from shared.platform.limits import LimitsError
from shared.platform.logs import configure_logging
from shared.platform.metrics import ServiceMetrics
from shared.platform.migrate_wait import wait_for_migrate_job
from shared.platform.secret_files import SecretFileError
from shared.platform.settings import ConfigError, Settings, get_settings


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one service (logical names), as the topology declares them."""

    consumes: tuple[str, ...]
    """The event-log topics its consumer loops read."""
    emits: tuple[str, ...]
    """The event-log topics its outbox relay writes."""
    provisions: tuple[str, ...]
    """The topics it creates at start-up (idempotent)."""

    @classmethod
    def of(
        cls,
        service: str,
        departments: Iterable[str],
        *,
        learns_from: Iterable[str] = (),
        provisions: Iterable[str] | None = None,
    ) -> Topics:
        """What ``service`` reads and writes in a deployment with these departments.
        It provisions ``provisions``; by default what it reads, their dead-letter queues
        (it writes those) and what it writes."""
        departments = sorted(set(departments))
        consumes = tuple(topology.reads(service, departments, learns_from=learns_from))
        emits = tuple(topology.writes(service, departments))
        if provisions is None:
            provisions = [*consumes, *(topology.dlq(t) for t in consumes), *emits]
        return cls(consumes, emits, tuple(dict.fromkeys(provisions)))


class Runner(Protocol):
    """A task of a service beside its loops and relay: runs until ``stop`` is set."""

    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Plumbing:
    """What :func:`open_service` opened for a service; a builder wires its loops and its
    HTTP app onto it with :meth:`service`."""

    name: str
    settings: Settings
    log: structlog.stdlib.BoundLogger
    pool: asyncpg.Pool
    signer: Signer
    keys: PublicKeys
    writer: OutboxWriter
    relay: OutboxRelay
    topics: Topics
    provision: Callable[[], Awaitable[Any]] | None = None
    """Topic provisioning still to do once running (``open_service(provision_later=True)``)."""

    def service(
        self,
        *,
        loops: Iterable[ConsumerLoop],
        http: HttpApp | None = None,
        on_close: Iterable[Callable[[], Awaitable[None]]] = (),
        ready_without_kafka: bool = False,
        runners: Iterable[Runner] = (),
    ) -> ServiceContext:
        """The finished service: this plumbing, its consumer loops, its HTTP app.
        ``ready_without_kafka``: its readiness needs PostgreSQL only (see ``ops``)."""
        return ServiceContext(
            name=self.name,
            settings=self.settings,
            log=self.log,
            pool=self.pool,
            relay=self.relay,
            topics=self.topics,
            loops=tuple(loops),
            http=http,
            on_close=tuple(on_close),
            ready_without_kafka=ready_without_kafka,
            runners=tuple(runners),
            provision=self.provision,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceContext:
    """A built service, not running yet: what it consumes (``loops``, reading
    ``topics.consumes``), what it emits (``relay``, writing ``topics.emits``), and how it
    answers HTTP. Immutable: :meth:`start` runs it (see :class:`RunningService`)."""

    name: str
    settings: Settings
    log: structlog.stdlib.BoundLogger
    pool: asyncpg.Pool
    relay: OutboxRelay
    topics: Topics
    loops: tuple[ConsumerLoop, ...]
    http: HttpApp | None = None
    """Its HTTP app (on ``ONEDOOR_HTTP_HOST``/``ONEDOOR_HTTP_PORT``), built once it runs;
    ``None``: the JSON health endpoint on ``ONEDOOR_HEALTH_PORT`` (when set)."""
    on_close: tuple[Callable[[], Awaitable[None]], ...] = ()
    """Called at shutdown once HTTP has stopped, before the loops stop and the relay
    drains (intake's acceptor)."""
    ready_without_kafka: bool = False
    """Ready (``/health/ready``) with PostgreSQL alone: intake accepts into its outbox
    while the broker is away."""
    runners: tuple[Runner, ...] = ()
    """Other tasks that run until the stop (the deadline service's timers)."""
    provision: Callable[[], Awaitable[Any]] | None = None
    """Topic provisioning that waits for the broker while the service already runs: the
    relay and the loops start once it is done (see ``open_service``)."""

    def start(self, stop: asyncio.Event) -> RunningService:
        """Start the outbox relay and every consumer loop as tasks that run until ``stop``
        is set, once the start-up's long-lived objects are set aside from the garbage
        collector (:func:`freeze_heap`). With provisioning still to do, a ``topics`` task
        does it first (waiting for the broker as long as it takes) and the relay and the
        loops start after it; the HTTP app answers meanwhile."""
        freeze_heap()
        runs: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
            ("relay", lambda: self.relay.run(stop)),
            *((loop.name, functools.partial(loop.run, stop)) for loop in self.loops),
            *((r.name, functools.partial(r.run, stop)) for r in self.runners),
        ]
        if self.provision is None:
            tasks: list[asyncio.Task[Any]] = [
                asyncio.create_task(run(), name=name) for name, run in runs
            ]
        else:
            # Not a watched task of its own (its normal end is no death): the tasks that
            # wait for it die with it when it fails.
            provisioned = asyncio.create_task(self._provision(stop), name="topics")
            tasks = [asyncio.create_task(_after(provisioned, run), name=n) for n, run in runs]
        metrics = ServiceMetrics([loop.metrics for loop in self.loops], self.relay)
        return RunningService(self, stop, tuple(tasks), time.monotonic(), metrics)

    async def _provision(self, stop: asyncio.Event) -> bool:
        """Provision the topics, waiting out a broker that is away; False when stopped
        first. A size-limit disagreement (``LimitsError``) fails it, and with it the relay
        and the loops that wait for it: the process exits 1, for its supervisor to see."""
        assert self.provision is not None
        waiting = asyncio.create_task(wait_for_dependency(self.provision, self.log))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
            return False
        stopped.cancel()
        try:
            created = waiting.result()
        except LimitsError as exc:
            self.log.error("refusing to publish: the size limits do not agree", error=str(exc))  # noqa: TRY400
            raise
        if created:
            self.log.info("topics created", topics=created)
        return True


async def _after(provisioned: asyncio.Task[bool], run: Callable[[], Awaitable[None]]) -> None:
    """Run ``run`` once the topics are provisioned; not at all when stopped before."""
    if await provisioned:
        await run()


HttpApp = Callable[["RunningService"], ASGIApp]
"""Builds a service's ASGI app around the running service (its health, its pool)."""


@dataclass(frozen=True, slots=True)
class RunningService:
    """A started service: its relay and loops run as ``tasks`` until ``stop`` is set."""

    service: ServiceContext
    stop: asyncio.Event
    tasks: tuple[asyncio.Task[None], ...]
    started_at: float
    metrics: ServiceMetrics
    """Its Prometheus registry (``GET /metrics``, see ``shared.platform.ops``)."""

    def http_app(self) -> ASGIApp | None:
        """The service's HTTP app, or None for a service that has none."""
        return None if self.service.http is None else self.service.http(self)

    async def health(self) -> dict[str, Any]:
        service = self.service
        try:
            backlog: int | None = await service.relay.backlog()
            dead: int | None = await service.relay.dead_letters()
            db_ok = True
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            backlog, dead, db_ok = None, None, False
        candidates = [service.relay.last_error, *(loop.last_error for loop in service.loops)]
        errors = [e for e in candidates if e] + self.stopped_tasks()
        return {
            "service": service.name,
            "status": "ok" if db_ok and not errors else "degraded",
            "database": db_ok,
            "outbox_backlog": backlog,
            "published": service.relay.published,
            # An alert figure: outbox rows no broker will ever take, moved aside.
            "outbox_dead_letters": dead,
            "outbox_retries": service.relay.retries,
            "consumed_records": sum(loop.records for loop in service.loops),
            "consumed_batches": sum(loop.batches for loop in service.loops),
            "consumer_lag_records": _total([await loop.lag() for loop in service.loops]),
            "uptime_s": self.uptime_s(),
            "errors": errors,
        }

    def stopped_tasks(self) -> list[str]:
        """The relay or loops that stopped although no stop was asked for."""
        return [
            f"{t.get_name()} stopped" for t in self.tasks if t.done() and not self.stop.is_set()
        ]

    def uptime_s(self) -> float:
        return round(time.monotonic() - self.started_at, 1)

    async def shutdown(self) -> None:
        """Graceful stop: the ``on_close`` hooks, then each loop commits the batch in
        hand and the relay drains the outbox, then the pool closes."""
        service = self.service
        for close in service.on_close:
            await close()
        self.stop.set()
        results = await asyncio.gather(*self.tasks, return_exceptions=True)
        for task, result in zip(self.tasks, results, strict=True):
            if isinstance(result, Exception):
                service.log.error("task had died", task=task.get_name(), error=repr(result))
        await service.pool.close()
        tracing.shutdown()  # exports the spans still pending
        service.log.info("service stopped")


@contextlib.asynccontextmanager
async def running(
    service: ServiceContext, stop: asyncio.Event | None = None
) -> AsyncIterator[RunningService]:
    """Run a built service for the ``async with`` block, then shut it down cleanly (for
    tests that run a service in-process; :func:`run_service` runs a process)."""
    live = service.start(stop or asyncio.Event())
    try:
        yield live
    finally:
        await live.shutdown()


def _total(values: Sequence[int | None]) -> int | None:
    """The sum; None (unknown) when any value is unknown: a partial sum would say less
    is waiting than does."""
    if any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)


def freeze_heap() -> int:
    """Set everything alive now aside from the cyclic garbage collector, for good; return
    how many objects that was.

    A started service holds a few hundred thousand objects that live as long as it does:
    modules, pydantic's validators, the catalogue. Every full collection walked them all,
    and under load a full collection comes every few seconds: each one paused the whole
    process, and a case waiting on that hop waited for the whole pause. Frozen, they are
    never walked again (reference counting still frees what is released), and full
    collections afterwards walk only what the service allocated since.
    Collects first, so no garbage is kept for good."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def lower_cpu_priority(nice: int) -> int:
    """Raise this process's niceness to at least ``nice`` (never lowers it, which would
    need privileges); return the niceness it runs at."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    return os.getpriority(os.PRIO_PROCESS, 0)


async def open_service(
    name: str,
    settings: Settings,
    *,
    schema: str,
    migrations: Sequence[Path],
    topics: Topics,
    provision_later: bool = False,
) -> Plumbing:
    """Configure logging, migrate, provision ``topics.provisions``, open the pool, load
    the key, build the relay. The service connects to Kafka as its own principal
    (``Settings.for_service``): the brokers' ACLs allow it only its own topics.

    ``provision_later``: leave the topics to the running service (``ServiceContext.start``),
    so it serves HTTP while the broker is away (intake accepts into its outbox)."""
    settings = settings.for_service(name)
    log = configure_logging(name, level=settings.log_level, json=settings.log_json)
    signer, keys = load_keys(settings, name)  # before anything else: a missing key stops here
    if tracing.configure(settings, name) is not None:
        log.info("tracing on", otel_sample_ratio=settings.otel_sample_ratio)
    directories = [MESSAGING_MIGRATIONS, *migrations]
    if not settings.migrate_at_start:
        # A service that provisions later (intake) waits for its schema only: it serves
        # while the broker is away, and its topics come with the Job or after it.
        waits_for = () if provision_later else topics.provisions
        await wait_for_migrate_job(
            settings, log, schema, directories, waits_for, wait_for_dependency
        )
    else:
        applied = await wait_for_dependency(
            lambda: migrate_dsn(settings.dsn(), schema, directories), log
        )
        if applied:
            log.info("migrations applied", schema=schema, applied=applied)
    provision = functools.partial(ensure_topics, settings, topics.provisions)
    if not provision_later:
        try:
            created = await wait_for_dependency(provision, log)
        except LimitsError as exc:
            log.error("refusing to start: the size limits do not agree", error=str(exc))  # noqa: TRY400
            raise
        if created:
            log.info("topics created", topics=created)
    # PostgreSQL may restart between the migrations and here (it did, under faults).
    pool = await wait_for_dependency(
        lambda: create_pool(
            settings.dsn(), schema, min_size=settings.db_pool_min, max_size=settings.db_pool_max
        ),
        log,
    )
    return Plumbing(
        name=name,
        settings=settings,
        log=log,
        pool=pool,
        signer=signer,
        keys=keys,
        writer=OutboxWriter(signer),
        relay=OutboxRelay(settings, pool, name=name),
        topics=topics,
        provision=provision if provision_later else None,
    )


def load_keys(settings: Settings, name: str) -> tuple[Signer, PublicKeys]:
    """The service's own private key and the key registry. Either missing, a private key
    readable by group or others, or a key the registry does not list as valid now stops
    start-up with the fix (``SigningKeyError``); keys are made by ``onedoor-keys``."""
    signer = Signer.load(settings.keys_dir, name, key_file=settings.signing_key_file)
    keys = PublicKeys.load(settings.registry_path())
    if not keys.verify(name, b"start-up", signer.sign(b"start-up"), datetime.now(UTC)):
        raise SigningKeyError(
            f"the key registry {settings.registry_path()} has no key of {name} valid now "
            f"matching its private key; run onedoor-keys generate {name}"
        )
    return signer, keys


async def wait_for_dependency(
    fn: Callable[[], Awaitable[Any]], log: Any, *, attempts: int | None = None
) -> Any:
    """Run a start-up step until Kafka and PostgreSQL let it through: a transient error
    (a refused connection, a server starting or restarting, a broker away) is waited out
    with exponential back-off (0.5 s doubling to 10 s) and jitter, forever unless
    ``attempts`` is given; a stop signal ends the wait (``run_service`` exits 0). A
    service never exits on a dependency that is only away."""
    delay = 0.5
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError) as exc:
            if attempts is not None and attempt >= attempts:
                raise
            what, error = "a dependency", exc
        except KafkaError as exc:
            if attempts is not None and attempt >= attempts:
                raise
            what, error = "Kafka", exc
        pause = delay * random.uniform(0.5, 1.5)
        log.warning(
            f"waiting for {what}",
            error=f"{type(error).__name__}: {error}",
            attempt=attempt,
            retry_in_s=round(pause, 2),
        )
        await asyncio.sleep(pause)
        delay = min(delay * 2, 10.0)


Builder = Callable[[Settings], Coroutine[Any, Any, ServiceContext]]


def run_service(build: Builder, *, nice: Callable[[Settings], int] | None = None) -> None:
    """Every service's ``__main__``: build the service and run it until SIGTERM/SIGINT.

    ``nice`` gives the CPU niceness the process takes before anything else (the audit's).
    Exits 0 after a clean stop (a stop during start-up included), 1 when a task died.
    """
    settings = get_settings()
    if nice is not None:
        lower_cpu_priority(nice(settings))
    try:
        died = aio.run(_main(build, settings))
    except KeyboardInterrupt:  # before the handlers were in place
        sys.exit(130)
    except SigningKeyError as exc:  # a configuration error: say the fix, no traceback
        structlog.get_logger().error("cannot start: signing keys", error=str(exc))
        sys.exit(2)
    except (SecretFileError, KafkaPrincipalError) as exc:  # the same, for Kafka's sign-in
        structlog.get_logger().error("cannot start: Kafka credentials", error=str(exc))
        sys.exit(2)
    except ConfigError as exc:
        structlog.get_logger().error("cannot start: settings", error=str(exc))
        sys.exit(2)
    if died:
        # Exit non-zero, so a supervisor (systemd, Kubernetes, the demo) sees the death.
        sys.exit(1)


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


async def _main(build: Builder, settings: Settings) -> bool:
    """Build and serve; whether a task died. The signal handlers are in place before
    start-up begins, so a stop requested while migrating or provisioning (or waiting
    for Kafka or PostgreSQL) ends the process cleanly instead of by the signal's
    default action."""
    stop = asyncio.Event()
    install_signal_handlers(stop)
    # Start-up and service share one context: what the build binds for logging (the
    # service's name on every line) reaches the tasks the service starts.
    context = contextvars.copy_context()
    building = asyncio.create_task(build(settings), name="start-up", context=context)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([building, stopping], return_when=asyncio.FIRST_COMPLETED)
    if not building.done():
        building.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await building
        structlog.get_logger().info("stopped during start-up")
        return False
    stopping.cancel()
    return await asyncio.create_task(serve(building.result(), stop), context=context)


async def serve(service: ServiceContext, stop: asyncio.Event) -> bool:
    """Run a built service until ``stop`` is set or one of its tasks dies, then shut it
    down cleanly: HTTP first (requests in flight are answered), then the loops and the
    relay, then the pool. Returns whether a task died.

    ``stop`` only asks for the shutdown; the relay and the loops run on until HTTP has
    stopped, so what the last requests wrote to the outbox is published before exit."""
    settings = service.settings
    live = service.start(asyncio.Event())
    watched = list(live.tasks)
    health: asyncio.Server | None = None
    server: _Uvicorn | None = None
    try:
        app = live.http_app()
        if app is None:
            health = await ops.serve_health(live)
        else:
            server = _Uvicorn(http_server.config(ops.OpsFront(app, live), settings))
            watched.append(await _serve_http(server))
            # The app and what uvicorn loaded to serve it live as long as the process:
            # set them aside from the collector too, as start() did with the rest.
            freeze_heap()
        service.log.info(
            "service started",
            loops=len(service.loops),
            health_port=settings.health_port,
            http_port=settings.http_port if app is not None else None,
        )
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([*watched, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
    finally:
        if health is not None:
            health.close()
        if server is not None:
            server.should_exit = True
            await asyncio.wait(watched[len(live.tasks) :])
        died = [t for t in watched if t.done() and not t.cancelled() and t.exception()]
        for task in died:
            error = repr(task.exception())
            service.log.error("a service task died", task=task.get_name(), error=error)
        await live.shutdown()
    return bool(died)


class _Uvicorn(uvicorn.Server):
    """uvicorn without signal handlers of its own (the runner's stop event rules); says
    when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.listening.set()


async def _serve_http(server: _Uvicorn) -> asyncio.Task[None]:
    """Start uvicorn; return its task once it listens (or has failed)."""

    async def serve() -> None:
        try:
            await server.serve()
        except SystemExit as exc:  # uvicorn's answer to a port it cannot bind
            raise RuntimeError(f"the HTTP server could not start (exit {exc.code})") from exc

    task = asyncio.create_task(serve(), name="http")
    listening = asyncio.create_task(server.listening.wait())
    await asyncio.wait([task, listening], return_when=asyncio.FIRST_COMPLETED)
    listening.cancel()
    return task
