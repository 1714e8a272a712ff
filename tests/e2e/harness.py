"""What the end-to-end tests share: the services as real processes, HTTP and topic helpers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
from aiokafka import TopicPartition
from pydantic import SecretStr

from deploy import dbroles, kafka_security
from deploy import stack as local_stack
from deploy.kafka_security import KafkaAccess
from shared.contracts.events import Event, parse_event
from shared.contracts.topology import writer
from shared.messaging.kafka import make_admin, make_producer, read_to_end
from shared.messaging.signing import Signer
from shared.messaging.topics import delete_topics_with_prefix
from shared.platform.settings import Settings
from tests.support.builders import case_body, person
from tests.support.staff import AUDITOR, CLERK, bearer, make_staff, sign_in_sync
from tests.support.waiting import wait_for, wait_for_sync

__all__ = [  # case_body and person stay importable from here for the tests that do
    "Pipeline",
    "case_body",
    "free_port",
    "person",
    "read_topic",
    "records_of",
    "republish",
    "run_services",
    "wait_closed",
    "wait_group_past",
]


_DATABASE_VARS = ("DATABASE_URL", "ONEDOOR_DATABASE_URL", "ONEDOOR_DATABASE_PASSWORD_FILE")


def free_port() -> int:
    """A free port below the ephemeral range: services restarted on it by fault tests
    must not find it taken by a retrying client's own socket (TCP self-connect)."""
    while True:
        port = random.randrange(20_000, 32_000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@dataclass
class Pipeline:
    """The running services; fault tests kill, restart and add instances through it."""

    base: str
    settings: Settings
    procs: dict[str, subprocess.Popen[bytes]]
    env: dict[str, str]
    commands: dict[str, list[str]] = field(default_factory=dict)
    logs: Path = Path()
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    auth: dict[str, str] = field(default_factory=dict)  # a clerk of C01 at window W01
    # An auditor (the audit's API), who says why it reads a case's history.
    auditor: dict[str, str] = field(default_factory=dict)

    def sign_in(self) -> None:
        """Sign the clerk and the auditor in (again: after intake restarted, the tokens
        still verify; this is for a test that wants fresh ones)."""
        self.auth = bearer(sign_in_sync(self.base, CLERK))
        self.auditor = bearer(sign_in_sync(self.base, AUDITOR)) | {
            "Onedoor-Access-Reason": "end-to-end test"
        }

    def health_urls(self) -> dict[str, str]:
        """The JSON health endpoint of each service that has one: intake's ``/health``,
        and each consumer service started with ``ONEDOOR_HEALTH_PORT`` in its env."""
        urls = {"intake": f"{self.base}/health"} if "intake" in self.commands else {}
        for name, env in self.service_env.items():
            if "ONEDOOR_HEALTH_PORT" in env:
                urls[name] = f"http://127.0.0.1:{env['ONEDOOR_HEALTH_PORT']}/health"
        return urls

    def env_of(self, name: str) -> dict[str, str]:
        """The environment ``name`` runs with: a service's, or ``auditor`` (the auditor's
        read-only database role, for onedoor-audit's commands)."""
        return self.env | self.service_env.get(name, {})

    def start(
        self, name: str, *, like: str | None = None, extra_env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``name`` (or another instance of service ``like`` under this name)."""
        service = like or name
        self.commands.setdefault(name, self.commands[service])
        env = self.env | self.service_env.get(service, {}) | dict(extra_env or {})
        proc = subprocess.Popen(
            [sys.executable, *self.commands[name]],
            env=env,
            stdout=(self.logs / f"{name}.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` (kill -9 by default) and wait for the process to end."""
        proc = self.procs[name]
        proc.send_signal(sig)
        return proc.wait(timeout=60)

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]


@contextlib.contextmanager
def run_services(
    commands: Mapping[str, Sequence[str]],
    *,
    kafka: KafkaAccess,
    database_url: str,
    logs: Path,
    extra_env: Mapping[str, str] | None = None,
    service_env: Mapping[str, Mapping[str, str]] | None = None,
    db_secrets: Path | None = None,
    migrate_job: bool = False,
) -> Iterator[Pipeline]:
    """Start each service as its own process on a fresh topic prefix, wait until intake is
    healthy, yield, then stop them with SIGTERM and check each stopped cleanly.

    ``database_url`` is the database owner's: each service (a key of ``commands``, which
    is its schema's name) is given its own role in that database instead, with its
    password file from ``db_secrets`` (the stack's secrets folder by default).

    ``migrate_job``: as Kubernetes runs them, the services start with
    ``ONEDOOR_MIGRATE_AT_START=false`` and wait (intake says so in its log) until
    ``onedoor-migrate`` has run, as the Job does, once; its output is ``logs/migrate.log``."""
    port = free_port()
    secrets_dir = db_secrets or dbroles.default_secrets_dir()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, dbroles.provision(database_url, commands, secrets_dir)).result()
    own_env = {
        name: dbroles.service_env(database_url, name, secrets_dir)
        | dict((service_env or {}).get(name, {}))
        for name in [*commands, "auditor"]
    }
    # Every signer of the stack, and any other service started here (a third department),
    # gets its key and a place in this run's registry before anything starts.
    local_stack.ensure_keys(logs / "keys", extra=tuple(commands))
    # The harness's own tools connect as the broker's admin; each service as itself,
    # with the ACLs the topology gives it on this run's topics (a department added by
    # the test's catalogue folder included).
    settings = kafka.admin.model_copy(
        update={
            "database_url": SecretStr(database_url),
            "topic_prefix": f"e2e{uuid4().hex[:8]}.",
            "keys_dir": logs / "keys",
        }
    )
    departments = kafka_security.catalogue_departments(dict(extra_env or {}))
    asyncio.run(kafka.provision(settings.topic_prefix, departments))
    # No process inherits the owner's connection (each gets its own role's: own_env) nor
    # the tools' Kafka principal (each connects as itself).
    inherited = {
        k: v
        for k, v in kafka_security.without_principal(os.environ).items()
        if k not in _DATABASE_VARS
    }
    env = inherited | kafka.client_env
    env |= {
        "ONEDOOR_TOPIC_PREFIX": settings.topic_prefix,
        "ONEDOOR_HTTP_PORT": str(port),
        "ONEDOOR_KEYS_DIR": str(logs / "keys"),
        "ONEDOOR_LOG_JSON": "true",
        # One sign-in lasts a whole module's tests and a fault scenario's restarts.
        "ONEDOOR_ACCESS_TOKEN_TTL_S": "7200",
        **(extra_env or {}),
    }
    base = f"http://127.0.0.1:{port}"
    pipeline = Pipeline(
        base,
        settings,
        {},
        env,
        {name: list(argv) for name, argv in commands.items()},
        logs,
        own_env,
    )
    if migrate_job:
        env["ONEDOOR_MIGRATE_AT_START"] = "false"
    for name in commands:
        pipeline.start(name)
    procs = pipeline.procs
    if migrate_job:
        run_migrate_job(pipeline, database_url, secrets_dir)
    completed = False

    def intake_healthy() -> bool:
        dead = [n for n, p in procs.items() if p.poll() is not None]
        assert not dead, f"{dead} died at start; logs in {logs}"
        try:
            return httpx.get(f"{base}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for_sync(intake_healthy, 90, "intake healthy", interval=0.2)
        if "intake" in commands:
            # Intake has migrated its schema: the staff the tests sign in as.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, make_staff(database_url, CLERK, AUDITOR)).result()
            pipeline.sign_in()
        yield pipeline
        completed = True
    finally:
        try:
            _stop_all(procs, logs, check=completed)
            if not completed:
                _print_log_tails(logs, procs)
        finally:
            with contextlib.suppress(Exception):
                asyncio.run(delete_topics_with_prefix(settings, settings.topic_prefix))
            with contextlib.suppress(Exception):
                asyncio.run(kafka.unprovision(settings.topic_prefix))


def run_migrate_job(pipeline: Pipeline, database_url: str, secrets_dir: Path) -> None:
    """Once intake waits for it: ``onedoor-migrate`` as the Job runs it (the owner's
    DATABASE_URL, whose user and password it replaces with each service's role)."""
    intake_log = pipeline.logs / "intake.log"
    wait_for_sync(
        lambda: intake_log.exists() and "waiting for onedoor-migrate" in intake_log.read_text(),
        90,
        "intake waiting for onedoor-migrate",
        interval=0.2,
    )
    job = subprocess.run(
        [sys.executable, "-m", "services.migrate", "--role-passwords", str(secrets_dir)],
        env=pipeline.env | {"DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    (pipeline.logs / "migrate.log").write_text(job.stdout + job.stderr)
    assert job.returncode == 0, job.stdout + job.stderr


def _stop_all(procs: dict[str, subprocess.Popen[bytes]], logs: Path, *, check: bool) -> None:
    """SIGTERM every service; with ``check``, each must have stopped cleanly."""
    for proc in procs.values():
        proc.terminate()
    for name, proc in procs.items():
        code: int | None
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        if not check:
            continue  # the failure already raised says more than a shutdown check
        # Graceful shutdown: SIGTERM ends each service cleanly, not with a traceback.
        # uvicorn re-raises the signal once its shutdown has completed.
        log = (logs / f"{name}.log").read_text()
        clean = code == 0 or (code == -signal.SIGTERM and "shutdown complete" in log)
        assert clean, f"{name} exited with {code}; log: {log[-2000:]}"


def _print_log_tails(logs: Path, procs: Mapping[str, object], lines: int = 15) -> None:
    """After a failure: each service's warnings and errors, then its last lines, so a CI
    log that keeps only the test output still says what the services were doing."""
    for name in procs:
        path = logs / f"{name}.log"
        if not path.exists():
            continue
        text = path.read_text(errors="replace").splitlines()
        alarms = [ln for ln in text if '"level": "warning"' in ln or '"level": "error"' in ln]
        print(f"--- {name}.log: {len(text)} lines, {len(alarms)} warnings/errors ---")
        for line in [*alarms[-lines:], "...", *text[-lines:]]:
            print(line[:500])


async def wait_closed(
    client: httpx.AsyncClient, case_id: str, deadline_s: float = 60
) -> dict[str, Any]:
    async def closed() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(f"/cases/{case_id}")).json()
        return body if body["status"] == "closed" else None

    return await wait_for(closed, deadline_s, f"case {case_id} closed")


async def wait_settled(pipeline: Pipeline, deadline_s: float = 60) -> dict[str, Any]:
    """Until every service with a health endpoint has published its whole outbox and taken
    every record on the broker, twice in a row with no record consumed or published in
    between (a batch in hand shows no lag yet may still emit). Returns the last health of
    each. Only then does what the topics hold stay as it is, and can be counted."""
    urls = pipeline.health_urls()
    last: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=5) as client:

        async def settled() -> bool:
            nonlocal last
            now: dict[str, Any] = {}
            for name, url in urls.items():
                try:
                    now[name] = (await client.get(url)).json()
                except (httpx.HTTPError, ValueError):
                    return False
            quiet = all(
                h.get("outbox_backlog") == 0 and h.get("consumer_lag_records") == 0
                for h in now.values()
            )
            steady = all(
                (h.get("published"), h.get("consumed_records"))
                == (last.get(n, {}).get("published"), last.get(n, {}).get("consumed_records"))
                for n, h in now.items()
            )
            last = now
            return quiet and steady

        await wait_for(settled, deadline_s, f"outboxes drained and topics consumed: {urls}")
    return last


async def read_topic(settings: Settings, topic: str) -> list[tuple[int, int, bytes, Event]]:
    """Everything on a topic now: (partition, offset, raw value, event)."""
    # The services created every topic with this many partitions (same settings).
    name = settings.topic(topic)
    parts = [TopicPartition(name, p) for p in range(settings.topic_partitions)]
    return [
        (r.partition, r.offset, r.value, parse_event(r.value))
        for r in await read_to_end(settings, parts)
    ]


async def records_of(
    settings: Settings, topic: str, case_id: UUID, expected: int
) -> list[tuple[int, int, bytes, Event]]:
    """The case's records on a topic, polled until ``expected`` are visible (deadline 30 s)."""

    async def found() -> list[tuple[int, int, bytes, Event]] | None:
        mine = [r for r in await read_topic(settings, topic) if r[3].case_id == case_id]
        return mine if len(mine) >= expected else None

    records = await wait_for(found, 30, f"{expected} records of the case on {topic}", interval=0.2)
    assert len(records) == expected, f"{len(records)} records of the case on {topic}"
    return records


async def wait_group_past(
    settings: Settings, group: str, topic: str, partition: int, offset: int
) -> None:
    """Until the service's consumer group has committed past ``offset``: it has handled
    that record."""
    admin = make_admin(settings)
    await admin.start()
    tp = TopicPartition(settings.topic(topic), partition)
    try:

        async def past() -> bool:
            meta = (await admin.list_consumer_group_offsets(settings.group(group))).get(tp)
            return meta is not None and meta.offset > offset

        await wait_for(past, 60, f"{group} past {tp}@{offset}")
    finally:
        await admin.close()


async def republish(
    settings: Settings, topic: str, value: bytes, key: bytes, *, signer: Signer | None = None
) -> tuple[int, int]:
    """Publish ``value`` on ``topic`` (logical) signed as its writer signs it (with the
    run's key of the topology's writer), or by ``signer``."""
    signer = signer or Signer.load(settings.keys_dir, writer(topic) or "nobody")
    headers = [(k, v.encode()) for k, v in signer.headers(value)]
    producer = make_producer(settings)
    await producer.start()
    try:
        meta = await (
            await producer.send(settings.topic(topic), value=value, key=key, headers=headers)
        )
    finally:
        await producer.stop()
    return meta.partition, meta.offset
