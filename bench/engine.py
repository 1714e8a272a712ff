"""The consumer engine alone: CPU per batch at a fixed record rate.

``make bench`` shows every service paying a large fixed cost per batch. This script
isolates the engine (``shared.messaging.consumer.ConsumerLoop``) from the services and the load
generator: another process produces CaseClosed records at ``--rate`` per second for
``--seconds``, and this process consumes them in one of three ways:

- ``consume``: fetch and commit offsets only (no database);
- ``tx``: plus one PostgreSQL transaction per batch (inbox claim, nothing emitted);
- ``full``: plus one event emitted per record, signed, written to the outbox and
  published by the relay: what a department adapter does.

It prints this process's CPU per second and per batch, and the CPU per second the
broker and PostgreSQL spent meanwhile (the producing child's share included). Run it
on the local stack: ``python -m bench.engine --rate 20 --variant full`` (``make stack-up`` first).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from uuid import uuid4

from pydantic import SecretStr

from bench.bench import stack_pids, tree_cpu_seconds
from deploy import kafka_security
from deploy import stack as local_stack
from shared.contracts.events import CaseClosed, CaseReviewFlagged, Event
from shared.contracts.topology import CASES_ROUTING, OPS_REDRIVES, dept_tasks, dlq
from shared.messaging import MESSAGING_MIGRATIONS
from shared.messaging.consumer import BatchProcessor, BatchResult, ConsumerLoop, Record, Tx
from shared.messaging.kafka import make_producer
from shared.messaging.keyring import generate_all
from shared.messaging.outbox import OutboxRelay, OutboxWriter
from shared.messaging.signing import PublicKeys, Signer
from shared.messaging.topics import delete_topics_with_prefix, ensure_topics
from shared.platform.db import create_database, create_pool, drop_database, migrate_dsn

SCHEMA = "engine"
# Declared topics of the topology, in the bench's own namespace (prefix): the loop reads
# one and emits onto another it does not read.
TOPIC = CASES_ROUTING
OUT = dept_tasks("engine")


class _ConsumeOnly:
    async def process(self, records: Sequence[Record]) -> BatchResult:
        return BatchResult(processed=len(records))


async def _emit_one(tx: Tx, event: Event) -> None:
    tx.emit(
        OUT,
        CaseReviewFlagged(
            **event.caused(),
            producer="engine",
            step_index=0,
            department="d",
            reason_code="r",
            message="m",
        ),
    )


async def _emit_nothing(_: Tx, __: Event) -> None:
    return None


async def produce(
    cfg: local_stack.StackConfig, prefix: str, rate: float, seconds: float, keys: Path
) -> None:
    """Run in the child process: CaseClosed records at ``rate`` per second, signed by the
    topic's writer as the router signs them (the engine checks every signature)."""
    settings = kafka_security.admin_settings(cfg, topic_prefix=prefix)
    signer = Signer.load(keys, "router")
    producer = make_producer(settings)
    await producer.start()
    try:
        started, sent = time.monotonic(), 0
        while time.monotonic() - started < seconds:
            case = uuid4()
            event = CaseClosed(
                case_id=case, correlation_id=case, producer="bench", outcome="approved"
            )
            value = event.to_json()
            headers = [(k, v.encode()) for k, v in signer.headers(value)]
            await producer.send(
                settings.topic(TOPIC), value, key=str(case).encode(), headers=headers
            )
            sent += 1
            await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
        await producer.flush()
    finally:
        await producer.stop()


async def measure(variant: str, rate: float, seconds: float) -> str:
    cfg = local_stack.StackConfig.from_env()
    name = f"engine{uuid4().hex[:6]}"
    database_url = await create_database(cfg.admin_dsn(), name)
    keys = Path(tempfile.mkdtemp(prefix="engine-keys-"))
    settings = kafka_security.admin_settings(
        cfg,
        database_url=SecretStr(database_url),
        topic_prefix=f"{name}.",
        keys_dir=keys,
    )
    generate_all(keys, ["router", "engine"])
    await migrate_dsn(database_url, SCHEMA, [MESSAGING_MIGRATIONS])
    pool = await create_pool(database_url, SCHEMA)
    await ensure_topics(settings, [TOPIC, dlq(TOPIC), OUT, OPS_REDRIVES])
    relay = OutboxRelay(settings, pool, name="engine") if variant == "full" else None
    processor = (
        _ConsumeOnly()
        if variant == "consume"
        else BatchProcessor(
            settings,
            pool,
            OutboxWriter(Signer.load(keys, "engine")),
            _emit_one if variant == "full" else _emit_nothing,
            consumer_name="engine",
            keys=PublicKeys.load(keys),
        )
    )
    loop = ConsumerLoop(settings, [TOPIC], group_id="engine", processor=processor, relay=relay)
    stop, ready = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(loop.run(stop, ready.set))]
    if relay is not None:
        tasks.append(asyncio.create_task(relay.run(stop)))
    try:
        await ready.wait()
        await asyncio.sleep(2)  # the group has settled
        cpu, wall = time.process_time(), time.monotonic()
        stack_cpu = _stack_cpu(cfg)
        batches, records = loop.batches, loop.records
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.engine",
            "--produce",
            settings.topic_prefix,
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--keys",
            str(keys),
            stdout=subprocess.DEVNULL,
        )
        await child.wait()
        await asyncio.sleep(1)  # the last records
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        stack_cpu = {k: v - stack_cpu[k] for k, v in _stack_cpu(cfg).items()}
        batches, records = loop.batches - batches, loop.records - records
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await pool.close()
        await delete_topics_with_prefix(settings, settings.topic_prefix)
        await drop_database(cfg.admin_dsn(), name)
    return (
        f"ENGINE variant={variant} rate={rate:g} records={records} batches={batches} "
        f"records_per_batch={records / max(batches, 1):.1f} cpu_ms_per_s={1000 * cpu / wall:.0f} "
        f"cpu_ms_per_batch={1000 * cpu / max(batches, 1):.2f} "
        + " ".join(f"{k}_cpu_ms_per_s={1000 * v / wall:.0f}" for k, v in stack_cpu.items())
    )


def _stack_cpu(cfg: local_stack.StackConfig) -> dict[str, float]:
    """CPU seconds so far of the broker and of PostgreSQL (with all its backends): what
    the engine costs them counts too (the load producer's share is in there as well)."""
    return {name: tree_cpu_seconds(pids) for name, pids in stack_pids(cfg).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=["consume", "tx", "full"], default="full")
    parser.add_argument("--rate", type=float, default=20.0, help="records per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--produce", metavar="PREFIX", help=argparse.SUPPRESS)
    parser.add_argument("--keys", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.produce is not None:
        cfg = local_stack.StackConfig.from_env()
        asyncio.run(produce(cfg, args.produce, args.rate, args.seconds, args.keys))
        return
    print(asyncio.run(measure(args.variant, args.rate, args.seconds)))


if __name__ == "__main__":
    main()
