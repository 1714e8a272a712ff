"""``make bench``: how many cases per second, how fast, against the raw limit of this machine.

One run on the real local stack, every service its own process:

1. raw baseline: a plain aiokafka hop (producer -> A -> forwarder -> B -> consumer) and a
   plain consumer reading a topic from the start;
2. end-to-end throughput: open-loop HTTP load at stepped rates; the highest rate whose
   closes keep up with submissions;
3. accept-to-close latency p50/p95/p99 for one-step and two-step items at 50 and 200/s;
4. audit replay: ``onedoor-audit verify`` over everything the run produced;
5. peak RSS of each service process;
6. violations (a benchmark that loses cases is void).

Prints a table, writes JSON under bench/results/, and ends with one ``BENCH ...`` line.
``--quick`` runs short steps for development (under 3 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from bench import loadgen
from deploy import dbroles, demo, kafka_security
from deploy import stack as local_stack
from deploy.demo import build_requests
from services.audit.ingest import event_log_pattern
from services.audit.verifier.replay import gc_paused
from services.audit.verifier.run import verify_log
from services.catalogue import default_catalogue
from shared.contracts.catalogue import Catalogue
from shared.contracts.topology import CASES_ACCEPTED, CASES_ROUTING
from shared.messaging.kafka import (
    client_options,
    make_admin,
    make_consumer,
    make_producer,
    partitions_matching,
)
from shared.messaging.principals import revoke_prefix
from shared.messaging.topics import delete_topics_with_prefix, ensure_topics
from shared.platform import aio
from shared.platform.db import create_database, drop_database
from shared.platform.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
DRAIN_LIMIT_S = 3.0
console = Console()


# --------------------------------------------------------------------------- raw baseline


async def raw_baseline(settings: Settings, messages: int) -> tuple[float, float]:
    """(hop msgs/s, consume msgs/s) with plain aiokafka on this broker, 200-byte records.

    It hops from one declared topic to another (``cases.accepted`` to ``cases.routing``)
    in a namespace of its own (``<prefix>raw.``), which no service of the run reads."""
    settings = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}raw."})
    source, sink_topic = CASES_ACCEPTED, CASES_ROUTING
    await ensure_topics(settings, [source, sink_topic])
    payload = b"x" * 200
    producer = make_producer(settings, linger_ms=5)
    await producer.start()
    forwarder_in = make_consumer(
        settings, settings.topic(source), group_id=f"fwd-{uuid4().hex[:6]}"
    )
    sink = make_consumer(settings, settings.topic(sink_topic), group_id=f"sink-{uuid4().hex[:6]}")
    await forwarder_in.start()
    await sink.start()
    forward_out = make_producer(settings, linger_ms=5)
    await forward_out.start()
    received = 0
    done = asyncio.Event()

    async def forward() -> None:
        moved = 0
        while moved < messages:
            batch = await forwarder_in.getmany(timeout_ms=100, max_records=5000)
            futures = [
                await forward_out.send(settings.topic(sink_topic), r.value, key=r.key)
                for records in batch.values()
                for r in records
            ]
            await asyncio.gather(*futures)
            moved += len(futures)
            if futures:
                await forwarder_in.commit()

    async def drain() -> None:
        nonlocal received
        while received < messages:
            batch = await sink.getmany(timeout_ms=100, max_records=5000)
            received += sum(len(r) for r in batch.values())
        done.set()

    started = time.perf_counter()
    tasks = [asyncio.create_task(forward()), asyncio.create_task(drain())]
    chunk = 5000
    for i in range(0, messages, chunk):
        futures = [
            await producer.send(settings.topic(source), payload, key=str(j % 64).encode())
            for j in range(i, min(messages, i + chunk))
        ]
        await asyncio.gather(*futures)
    await asyncio.wait_for(done.wait(), 300)
    hop = messages / (time.perf_counter() - started)
    await asyncio.gather(*tasks)
    for client in (producer, forward_out, forwarder_in, sink):
        await client.stop()

    reader = AIOKafkaConsumer(
        **client_options(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await reader.start()
    parts = [TopicPartition(settings.topic(source), p) for p in range(settings.topic_partitions)]
    reader.assign(parts)
    count = 0
    started = time.perf_counter()
    while count < messages:
        batch = await reader.getmany(timeout_ms=500, max_records=50_000)
        count += sum(len(r) for r in batch.values())
    consume = count / (time.perf_counter() - started)
    await reader.stop()
    return hop, consume


# --------------------------------------------------------------------------- services


@dataclass
class Services:
    procs: dict[str, subprocess.Popen[bytes]]
    stack: dict[str, list[int]] = field(default_factory=dict)  # kafka, postgres: root pids
    health: dict[str, str] = field(default_factory=dict)  # service -> its /health URL
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    _sampled_at: float = 0.0

    async def batches(self) -> dict[str, tuple[int, int]]:
        """(batches, records) each service's consumer has handled so far, from /health:
        a service's cost is mostly per batch, so records per batch explain CPU per case."""
        out: dict[str, tuple[int, int]] = {}
        async with httpx.AsyncClient(timeout=2) as client:
            for name, url in self.health.items():
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
                    body = (await client.get(url)).json()
                    out[name] = (int(body["consumed_batches"]), int(body["consumed_records"]))
        return out

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) so far of every service, Kafka, PostgreSQL (all its
        backends) and this process (the load generator and its watcher)."""
        roots = {name: [p.pid] for name, p in self.procs.items()} | self.stack
        out = {name: tree_cpu_seconds(pids) for name, pids in roots.items()}
        own = psutil.Process().cpu_times()
        out["load generator"] = own.user + own.system
        machine = psutil.cpu_times()
        out["machine"] = machine.user + machine.system + machine.nice + machine.softirq
        out["machine"] += machine.irq + machine.steal
        return out

    def sample(self) -> None:
        now = time.monotonic()
        if now - self._sampled_at < 0.25:  # reading /proc costs CPU the services need
            return
        self._sampled_at = now
        for name, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                rss = psutil.Process(proc.pid).memory_info().rss / 2**20
                self.peak_rss_mb[name] = max(self.peak_rss_mb.get(name, 0.0), rss)

    def dead(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is not None]


def tree_cpu_seconds(pids: Iterable[int]) -> float:
    """CPU seconds (user + system) so far of these processes and all their children
    (PostgreSQL's backends); a process gone meanwhile counts nothing."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    total += times.user + times.system
    return total


def stack_pids(cfg: local_stack.StackConfig) -> dict[str, list[int]]:
    kafka = [p for n in range(cfg.kafka_nodes) if (p := local_stack.kafka_running(cfg, n))]
    pids = {"kafka": kafka}
    with contextlib.suppress(OSError, ValueError, IndexError):
        pids["postgres"] = [int((cfg.pg_data / "postmaster.pid").read_text().splitlines()[0])]
    return pids


# --------------------------------------------------------------------------- load


WATCH_FETCH_BYTES = 4 * 1024 * 1024
WATCH_FETCH_WAIT_MS = 100


@dataclass
class Watcher:
    """Follows cases.accepted and cases.routing: accept and close times of every case."""

    settings: Settings
    accepted: dict[str, datetime] = field(default_factory=dict)
    items: dict[str, str] = field(default_factory=dict)
    closed: dict[str, datetime] = field(default_factory=dict)
    closes: dict[str, int] = field(default_factory=dict)

    def observe(self, value: bytes | None) -> None:
        # Plain JSON, not the event classes: the watcher shares the cores it measures.
        try:
            body = json.loads(value or b"")
            kind, cid = body["event_type"], body["case_id"]
            at = datetime.fromisoformat(body["occurred_at"])
        except (ValueError, KeyError, TypeError):
            return
        if kind == "CaseAccepted":
            self.accepted[cid] = at
            self.items[cid] = body.get("item_code", "")
        elif kind == "CaseClosed":
            self.closed.setdefault(cid, at)
            self.closes[cid] = self.closes.get(cid, 0) + 1

    async def run(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            **client_options(self.settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # At most ten fetches a second, however busy the topics: latencies come from
            # the events' own timestamps, not from when the watcher sees them, and each
            # fetch costs this process and the broker CPU the services under test need.
            fetch_min_bytes=WATCH_FETCH_BYTES,
            fetch_max_wait_ms=WATCH_FETCH_WAIT_MS,
        )
        await consumer.start()
        parts = [
            TopicPartition(self.settings.topic(t), p)
            for t in (CASES_ACCEPTED, CASES_ROUTING)
            for p in range(self.settings.topic_partitions)
        ]
        consumer.assign(parts)
        ready.set()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
                for records in batch.values():
                    for r in records:
                        # The relay's event_type header tells which records matter
                        # without parsing the other three quarters.
                        kind = next((v for k, v in r.headers if k == "event_type"), None)
                        if kind in (b"CaseAccepted", b"CaseClosed", None):
                            self.observe(r.value)
        finally:
            await consumer.stop()


@dataclass
class Step:
    rate: int
    seconds: float
    submitted: int = 0
    accepted: list[str] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    backlog_at_end: int = 0
    audit_lag_at_end: int = 0  # records the audit had not stored when the cases closed
    drained_s: float | None = None
    cpu_ms_per_case: dict[str, float] = field(default_factory=dict)
    batches_per_s: dict[str, float] = field(default_factory=dict)
    records_per_batch: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0  # from the first request to the last close
    answers_lag_s: float = 0.0  # from the last request sent to its answer

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    @property
    def keeps_up(self) -> bool:
        # Every case closed within DRAIN_LIMIT_S of the last request sent: the backlog
        # did not grow during the step (a growing one takes seconds more to drain).
        return self.errors == 0 and self.drained_s is not None and self.drained_s <= DRAIN_LIMIT_S


async def run_step(
    base: tuple[str, int], requests: list[bytes], step: Step, watcher: Watcher, services: Services
) -> None:
    """Open loop: a request every 1/rate seconds whatever the answers; then drain."""
    interval = 1 / step.rate
    pending: set[asyncio.Task[None]] = set()
    client = loadgen.Client(*base, connections=64)

    async def submit(request: bytes) -> None:
        # A window gives up after 10 s: a request still unanswered then counts as an error.
        try:
            async with asyncio.timeout(10):
                answer = await client.send(request)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, loadgen.HttpError) as exc:
            step.error(type(exc).__name__)
            return
        if answer.status == 201:
            step.accepted.append(answer.json()["case_id"])
        elif answer.status != 422:
            step.error(f"HTTP {answer.status}")

    batches_before = await services.batches()
    cpu_before = services.cpu_seconds()
    started = time.perf_counter()
    n = 0
    while (elapsed := time.perf_counter() - started) < step.seconds:
        due = int(elapsed / interval) + 1
        while n < due:
            task = asyncio.create_task(submit(requests[n % len(requests)]))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        services.sample()
        await asyncio.sleep(min(interval, 0.01))
    step.submitted = n
    # The clock for "keeps up" starts when the last request is SENT: answers that lag
    # behind (requests queued in intake) count against the step, not for it.
    submit_end = time.perf_counter()
    if pending:
        await asyncio.gather(*pending)
    await client.close()
    step.answers_lag_s = time.perf_counter() - submit_end
    step.backlog_at_end = sum(1 for c in step.accepted if c not in watcher.closed)
    drained = True
    while any(c not in watcher.closed for c in step.accepted):
        services.sample()
        if time.perf_counter() - submit_end > 60 or services.dead():
            drained = False
            break
        await asyncio.sleep(0.05)
    if drained:
        step.drained_s = time.perf_counter() - submit_end
    step.wall_s = time.perf_counter() - started
    await _account(step, services, cpu_before, batches_before)


async def _account(
    step: Step,
    services: Services,
    cpu_before: dict[str, float],
    batches_before: dict[str, tuple[int, int]],
) -> None:
    """The step's CPU per accepted case, and each consumer's batches and their size."""
    cpu_after = services.cpu_seconds()
    for name, (batches, records) in (await services.batches()).items():
        first_batches, first_records = batches_before.get(name, (0, 0))
        if batches > first_batches:
            step.batches_per_s[name] = round((batches - first_batches) / step.wall_s, 1)
            step.records_per_batch[name] = round(
                (records - first_records) / (batches - first_batches), 1
            )
    if step.accepted:
        step.cpu_ms_per_case = {
            name: round(
                (cpu_after[name] - cpu_before.get(name, 0.0)) * 1000 / len(step.accepted), 2
            )
            for name in cpu_after
        }


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "n": len(ordered)}


def latency(step: Step, watcher: Watcher, catalogue: Catalogue, steps: int) -> dict[str, float]:
    values = []
    for case in step.accepted:
        item = catalogue.get(watcher.items.get(case, ""))
        if item is None or len(item.steps) != steps or item.settle_on_spot:
            continue
        if case in watcher.closed and case in watcher.accepted:
            values.append((watcher.closed[case] - watcher.accepted[case]).total_seconds() * 1000)
    return percentiles(values)


async def e2e_steps(
    results: dict[str, Any],
    quick: bool,
    port: int,
    *,
    rates: list[int] | None,
    watcher: Watcher,
    services: Services,
    catalogue: Catalogue,
    database_url: str,
    centre: str,
) -> None:
    """Stepped open-loop load until a step no longer keeps up; fills ``results``."""
    # Windows W01-W08 of the centre, signed in once; each request is encoded once with
    # its window's token, so the generator spends nothing more per request.
    tokens = await demo.clerk_tokens(f"http://127.0.0.1:{port}", database_url, centre)
    requests = [
        loadgen.encode_post("127.0.0.1", "/cases", body, token=tokens[n % len(tokens)])
        for n, (body, _) in enumerate(build_requests(catalogue, 20_000, seed=42))
    ]
    rates = rates or ([50, 200] if quick else [50, 100, 200, 250, 300, 400, 500, 700, 1000])
    seconds = 8.0 if quick else 30.0
    steps: list[Step] = []
    # Warm-up, not measured: consumer groups finish joining and every code path has run
    # once, so the first step does not carry the start-up in its latencies.
    warm = Step(20, 2.0)
    await run_step(("127.0.0.1", port), requests[-100:], warm, watcher, services)
    warm_s = None if warm.drained_s is None else round(warm.drained_s, 1)
    console.print(
        f"[bold]2-3. end-to-end steps[/] (open loop over HTTP; warm-up drained {warm_s} s)"
    )
    for rate in rates:
        step = Step(rate, seconds)
        # This process shares the cores it measures. Its collector, left on, ran long
        # full collections often enough to send the open-loop requests in bursts
        # (docs/performance.md): paused for the step (what it holds for a step is small;
        # nothing is lost, it is collected after).
        with gc_paused():
            await run_step(("127.0.0.1", port), requests, step, watcher, services)
        step.audit_lag_at_end = await audit_lag(watcher.settings)
        steps.append(step)
        drained = None if step.drained_s is None else round(step.drained_s, 1)
        console.print(
            f"   {rate:>5}/s: submitted {step.submitted}, accepted {len(step.accepted)}, "
            f"errors {step.errors} {step.error_kinds or ''}, "
            f"answers lagged {step.answers_lag_s:.1f} s, backlog at end "
            f"{step.backlog_at_end}, all closed {drained} s after the last request, "
            f"audit {step.audit_lag_at_end} records behind"
        )
        if step.cpu_ms_per_case:
            split = ", ".join(f"{k} {v:.2f}" for k, v in step.cpu_ms_per_case.items())
            console.print(f"          CPU ms per accepted case: {split}")
        if step.batches_per_s:
            split = ", ".join(
                f"{k} {v:.0f} ({step.records_per_batch[k]:.1f})"
                for k, v in step.batches_per_s.items()
            )
            console.print(f"          consumer batches per second (records each): {split}")
        if not step.keeps_up or services.dead():
            break
    kept = [s.rate for s in steps if s.keeps_up]
    results["e2e_cases_per_s"] = max(kept) if kept else 0
    results["steps"] = [
        {k: v for k, v in asdict(s).items() if k != "accepted"} | {"accepted": len(s.accepted)}
        for s in steps
    ]
    for step in steps:
        if step.rate in (50, 200):
            for n, label in ((1, "one"), (2, "two")):
                key = f"latency_{label}_step_at_{step.rate}"
                results[key] = latency(step, watcher, catalogue, n)


async def audit_lag(settings: Settings) -> int:
    """Records of the run's event log that the audit service has not committed yet."""
    parts = await partitions_matching(settings, event_log_pattern(settings))
    admin = make_admin(settings)
    reader = AIOKafkaConsumer(**client_options(settings))
    await admin.start()
    await reader.start()
    try:
        committed = await admin.list_consumer_group_offsets(settings.group("audit"))
        ends = await reader.end_offsets(parts)
    finally:
        await reader.stop()
        await admin.close()
    return sum(
        max(0, end - (committed[tp].offset if tp in committed else 0)) for tp, end in ends.items()
    )


async def settle(settings: Settings, watcher: Watcher, services: Services) -> float:
    """Wait (at most 120 s) until every accepted case is closed and audit has caught up."""
    started = time.perf_counter()
    while time.perf_counter() - started < 120 and not services.dead():
        open_cases = sum(1 for c in watcher.accepted if c not in watcher.closed)
        if open_cases == 0 and await audit_lag(settings) == 0:
            break
        services.sample()
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


async def audit_replay(settings: Settings, watcher: Watcher, results: dict[str, Any]) -> None:
    console.print("[bold]4. audit replay[/] (onedoor-audit verify over the run)")
    report = await verify_log(settings, check_signatures=True)
    seconds_spent = report.seconds
    doubled = sum(1 for n in watcher.closes.values() if n > 1)
    results["verify_events_per_s"] = round(report.records / seconds_spent)
    # The form of the target: at least 0.1 of what a plain consumer reads.
    results["verify_to_raw_consume"] = round(
        results["verify_events_per_s"] / max(results["raw_consume_msgs_per_s"], 1), 3
    )
    results["verify_records"] = report.records
    results["verify_by_kind"] = report.by_kind()
    results["violations"] = len(report.errors()) + doubled + results["unclosed"]


# --------------------------------------------------------------------------- main


async def run_settings(cfg: local_stack.StackConfig, database_url: str, prefix: str) -> Settings:
    """The run's settings: the bench's own tools connect as the stack's admin; the
    services as themselves, with the ACLs of this run's topics (made here)."""
    settings = kafka_security.admin_settings(
        cfg, database_url=SecretStr(database_url), topic_prefix=prefix
    )
    departments = kafka_security.catalogue_departments()
    await kafka_security.provision(settings, kafka_security.secrets_dir(cfg), prefix, departments)
    return settings


async def clean_up(cfg: local_stack.StackConfig, settings: Settings) -> None:
    """Drop the run's topics, their ACLs and its database."""
    prefix = settings.topic_prefix
    await delete_topics_with_prefix(settings, prefix)
    await revoke_prefix(settings, prefix)
    await drop_database(cfg.admin_dsn(), prefix.rstrip("."))


async def own_database(cfg: local_stack.StackConfig, name: str) -> str:
    """A database of the run's own (its owner's DSN), where the services connect as
    their own roles, owners of their schemas."""
    database_url = await create_database(cfg.admin_dsn(), name)
    await dbroles.provision(database_url, ["intake", *demo.SERVICES], cfg.secrets_dir)
    return database_url


async def bench(quick: bool, rates: list[int] | None = None, *, keep: bool = False) -> int:
    cfg = local_stack.StackConfig.from_env()
    await asyncio.to_thread(local_stack.up, cfg)
    prefix = f"bench{datetime.now(UTC):%m%d%H%M%S}."
    # The run's own database and topics: verify and the audit store's chain check cover
    # this run only, and both are dropped at the end (the JSON keeps the figures).
    database_url = await own_database(cfg, prefix.rstrip("."))
    settings = await run_settings(cfg, database_url, prefix)
    results: dict[str, Any] = {
        "prefix": prefix,
        "quick": quick,
        "started": datetime.now(UTC).isoformat(),
    }

    console.print("[bold]1. raw baseline[/] (plain aiokafka, 200-byte records)")
    hop, consume = await raw_baseline(settings, 50_000 if quick else 300_000)
    results["raw_hop_msgs_per_s"] = round(hop)
    results["raw_consume_msgs_per_s"] = round(consume)
    console.print(f"   hop {hop:,.0f} msg/s, consume {consume:,.0f} msg/s")

    port = int(os.environ.get("ONEDOOR_BENCH_PORT", "18180"))
    env = (
        kafka_security.without_principal(os.environ)
        | kafka_security.client_env(cfg)
        | {
            "ONEDOOR_TOPIC_PREFIX": prefix,
            "ONEDOOR_LOG_JSON": "true",
            "ONEDOOR_LOG_LEVEL": "WARNING",
            "ONEDOOR_ACCESS_TOKEN_TTL_S": "3600",  # the full ladder runs up to 20 minutes
        }
    )
    logs = cfg.data_dir / "logs" / prefix.rstrip(".")
    procs, health = demo.start_services(
        env, logs, port, demo.database_roles(database_url, cfg.secrets_dir)
    )
    services = Services(procs, stack=stack_pids(cfg), health=health)
    stop = asyncio.Event()
    watcher = Watcher(settings)
    catalogue = default_catalogue()
    code = 1
    try:
        await demo.wait_healthy(procs, health, logs)
        ready = asyncio.Event()
        watch_task = asyncio.create_task(watcher.run(stop, ready))
        await ready.wait()
        await e2e_steps(
            results,
            quick,
            port,
            rates=rates,
            watcher=watcher,
            services=services,
            catalogue=catalogue,
            database_url=dbroles.service_dsn(database_url, "intake", cfg.secrets_dir),
            centre=settings.centre_id,
        )
        # Requests that timed out in the generator may still have been accepted: let every
        # accepted case close and the audit ingest catch up, then stop the services so
        # verify replays a log that no longer moves (a moving log is cut inconsistently).
        results["settle_s"] = round(await settle(settings, watcher, services), 1)
        results["unclosed"] = sum(1 for c in watcher.accepted if c not in watcher.closed)
        stop.set()
        await watch_task
        demo.stop_services(procs)
        await audit_replay(settings, watcher, results)
        results["max_service_rss_mb"] = round(max(services.peak_rss_mb.values()))
        results["rss_mb"] = {k: round(v) for k, v in services.peak_rss_mb.items()}
        code = 0 if results["violations"] == 0 else 1
    finally:
        stop.set()
        demo.stop_services(procs)
        if not keep:
            await clean_up(cfg, settings)
    print_results(results)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{prefix.rstrip('.')}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    console.print(f"results: {out}")
    one = results.get("latency_one_step_at_200", {}).get("p99", float("nan"))
    two = results.get("latency_two_step_at_200", {}).get("p99", float("nan"))
    print(
        f"BENCH e2e_cases_per_s={results.get('e2e_cases_per_s', 0)} "
        f"p99_ms_one_step_at_200={one:.0f} p99_ms_two_step_at_200={two:.0f} "
        f"raw_hop_msgs_per_s={results['raw_hop_msgs_per_s']} "
        f"verify_events_per_s={results.get('verify_events_per_s', 0)} "
        f"raw_consume_msgs_per_s={results['raw_consume_msgs_per_s']} "
        f"max_service_rss_mb={results.get('max_service_rss_mb', 0)} "
        f"violations={results.get('violations', -1)}"
    )
    return code


def print_results(results: dict[str, Any]) -> None:
    table = Table(title="onedoor bench", show_header=False)
    for key in (
        "raw_hop_msgs_per_s",
        "raw_consume_msgs_per_s",
        "e2e_cases_per_s",
        "verify_events_per_s",
        "verify_to_raw_consume",
        "verify_records",
        "max_service_rss_mb",
        "unclosed",
        "settle_s",
        "violations",
    ):
        table.add_row(key, str(results.get(key)))
    for key in (
        "latency_one_step_at_50",
        "latency_two_step_at_50",
        "latency_one_step_at_200",
        "latency_two_step_at_200",
    ):
        if key in results:
            v = results[key]
            table.add_row(
                f"{key} ms",
                f"p50 {v['p50']:.0f} / p95 {v['p95']:.0f} / p99 {v['p99']:.0f} (n={v['n']})",
            )
    for name, mb in results.get("rss_mb", {}).items():
        table.add_row(f"peak RSS {name} (MB)", str(mb))
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short steps (under 3 minutes)")
    parser.add_argument(
        "--rates",
        type=lambda text: [int(r) for r in text.split(",")],
        help="comma-separated cases/s steps instead of the default ladder (e.g. 200,500)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's topics and database for a look"
    )
    args = parser.parse_args(argv)
    # On uvloop like the services: the load generator shares the cores it measures.
    return aio.run(bench(args.quick, args.rates, keep=args.keep))


if __name__ == "__main__":
    sys.exit(main())
