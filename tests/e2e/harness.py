"""What the end-to-end tests share: the services as real processes, HTTP and topic helpers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr

from shared.contracts.events import Event, parse_event
from shared.contracts.identity import make_resident_id
from shared.messaging.kafka import make_producer, read_to_end
from shared.messaging.topics import delete_topics_with_prefix
from shared.platform.settings import Settings

_seq = iter(range(1, 100_000))


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


def person() -> dict[str, str]:
    """A fresh natural-person applicant with a valid resident ID."""
    rid = make_resident_id("110105", date(1985, 3, next(_seq) % 28 + 1), int(uuid4().int % 1000))
    return {"kind": "natural", "name": "Zhang Min", "id_number": rid, "phone": "13912345678"}


def case_body(item: str, applicant: dict[str, str], form: dict[str, Any]) -> dict[str, Any]:
    return {
        "item_code": item,
        "applicant": applicant,
        "community_code": "110105001001",
        "form": form,
        "window_id": "W01",
        "operator_id": "op-1",
        "channel": "window",
    }


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
    bootstrap_servers: str,
    database_url: str,
    logs: Path,
    extra_env: Mapping[str, str] | None = None,
    service_env: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[Pipeline]:
    """Start each service as its own process on a fresh topic prefix, wait until intake is
    healthy, yield, then stop them with SIGTERM and check each stopped cleanly."""
    port = free_port()
    settings = Settings(
        kafka_bootstrap_servers=bootstrap_servers,
        database_url=SecretStr(database_url),
        topic_prefix=f"e2e{uuid4().hex[:8]}.",
        keys_dir=logs / "keys",
    )
    env = dict(os.environ) | {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "DATABASE_URL": database_url,
        "ONEDOOR_TOPIC_PREFIX": settings.topic_prefix,
        "ONEDOOR_HTTP_PORT": str(port),
        "ONEDOOR_KEYS_DIR": str(logs / "keys"),
        "ONEDOOR_LOG_JSON": "true",
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
        {name: dict(e) for name, e in (service_env or {}).items()},
    )
    for name in commands:
        pipeline.start(name)
    procs = pipeline.procs
    deadline = time.monotonic() + 90
    completed = False
    try:
        while True:
            dead = [n for n, p in procs.items() if p.poll() is not None]
            assert not dead, f"{dead} died at start; logs in {logs}"
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "intake not healthy in 90 s"
            time.sleep(0.2)
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
    deadline = time.monotonic() + deadline_s
    while True:
        body: dict[str, Any] = (await client.get(f"/cases/{case_id}")).json()
        if body["status"] == "closed":
            return body
        assert time.monotonic() < deadline, f"case not closed in {deadline_s} s: {body}"
        await asyncio.sleep(0.1)


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
    deadline = time.monotonic() + 30
    while True:
        found = [r for r in await read_topic(settings, topic) if r[3].case_id == case_id]
        if len(found) >= expected or time.monotonic() > deadline:
            assert len(found) == expected, f"{len(found)} records of the case on {topic}"
            return found
        await asyncio.sleep(0.2)


async def wait_group_past(
    settings: Settings, group: str, topic: str, partition: int, offset: int
) -> None:
    """Until the service's consumer group has committed past ``offset``: it has handled
    that record."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    tp = TopicPartition(settings.topic(topic), partition)
    try:
        deadline = time.monotonic() + 60
        while True:
            offsets = await admin.list_consumer_group_offsets(settings.group(group))
            meta = offsets.get(tp)
            if meta is not None and meta.offset > offset:
                return
            assert time.monotonic() < deadline, f"{group} did not pass {tp}@{offset}"
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def republish(settings: Settings, topic: str, value: bytes, key: bytes) -> tuple[int, int]:
    producer = make_producer(settings)
    await producer.start()
    try:
        meta = await (await producer.send(settings.topic(topic), value=value, key=key))
    finally:
        await producer.stop()
    return meta.partition, meta.offset
