"""``onedoor-audit``: the auditor's command line.

    onedoor-audit verify [--json] [--recheck-signatures | --no-signatures]
                                                      replay the whole log, check every invariant
    onedoor-audit history CASE_ID [--json]            one case's timeline
    onedoor-audit rebuild                             rebuild the projection, compare digests
    onedoor-audit stats [--json | --csv]              counts, shares, times
    onedoor-audit dlq list | redrive TOPIC P OFFSET --reason TEXT   dead letters

Connection settings come from the environment like every service's
(KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, ONEDOOR_TOPIC_PREFIX, ONEDOOR_KEYS_DIR).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import multiprocessing
import multiprocessing.process
import os
import sys
import time
from collections.abc import Callable, Container, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any, cast
from uuid import UUID

import asyncpg
from aiokafka import TopicPartition
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from services.audit import dlq, queries, store
from services.audit.api import MIGRATIONS
from services.audit.domain import (
    LogRecord,
    ShardReport,
    VerifyReport,
    gc_paused,
    merge_shards,
    verify,
    verify_shard,
)
from services.audit.ingest import VERDICT_SIGNER, event_log_pattern
from services.catalogue import default_catalogue
from shared.contracts.events import utcnow
from shared.contracts.topology import OPS_REDRIVES
from shared.messaging import MESSAGING_MIGRATIONS
from shared.messaging.kafka import fetch_to_end, partitions_matching
from shared.messaging.signing import (
    SIGNATURE_HEADER,
    SIGNER_HEADER,
    PublicKeys,
    Signer,
    SigningKeyError,
    verdict_mac_key,
)
from shared.platform.db import create_pool, migrate_dsn
from shared.platform.settings import Settings, get_settings

SCHEMA = "audit"
out = Console()
err = Console(stderr=True)


async def read_log(
    settings: Settings,
    on_progress: Callable[[int, int], None] | None = None,
    partitions: Sequence[TopicPartition] | None = None,
) -> list[LogRecord]:
    """Every record of every event-log topic (or of ``partitions``), from the first offset
    to the end as it is now, each fetched batch turned into LogRecords at once
    (``shared.messaging.kafka.fetch_to_end``)."""
    if partitions is None:
        partitions = await partitions_matching(settings, event_log_pattern(settings))
    records: list[LogRecord] = []
    topics = {tp.topic: tp.topic.removeprefix(settings.topic_prefix) for tp in partitions}
    append = records.append
    async for total, batch in fetch_to_end(settings, partitions):
        for r in batch:
            signer = signature = None  # the first of each, as ingest.header reads
            for key, raw in r.headers:
                if key == SIGNER_HEADER and signer is None:
                    signer = raw.decode(errors="replace")
                elif key == SIGNATURE_HEADER and signature is None:
                    signature = raw.decode(errors="replace")
            append(
                LogRecord(topics[r.topic], r.partition, r.offset, r.value or b"", signer, signature)
            )
        if on_progress is not None:
            on_progress(len(records), total)
    return records


async def _connect(settings: Settings) -> asyncpg.Connection | None:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            settings.dsn(), server_settings={"search_path": SCHEMA}
        )
    except (OSError, asyncpg.PostgresError):
        return None
    return conn


async def _verified_digests(
    settings: Settings, shard: tuple[int, int] = (1, 0)
) -> Container[bytes]:
    """The good ingest-time signature verdicts of this deployment (of one ``shard``, see
    ``store.verified_digests``) whose MAC checks under the audit's key. None (every
    signature checked here) when the store is not reachable or predates verdicts, or when
    this keys folder holds no audit key."""
    try:
        mac_key = verdict_mac_key(Signer.load(settings.keys_dir, VERDICT_SIGNER, create=False))
    except (SigningKeyError, OSError, ValueError):
        return frozenset()
    conn = await _connect(settings)
    if conn is None:
        return frozenset()
    try:
        return await store.verified_digests(conn, settings.topic_prefix, mac_key, shard)
    except asyncpg.PostgresError:
        return frozenset()  # e.g. a store the audit service has not migrated yet
    finally:
        await conn.close()


def _load_verdicts(
    settings: Settings, shard: tuple[int, int], *, reuse: bool
) -> asyncio.Task[Container[bytes]]:
    """The stored verdicts a replay may reuse, loading beside the reading; none when every
    signature is to be checked (or none at all)."""
    return asyncio.create_task(
        _verified_digests(settings, shard) if reuse else asyncio.sleep(0, frozenset())
    )


async def _store_violations(settings: Settings) -> list[Any] | None:
    """Hash-chain breaks in the audit store, or None when the store is not reachable."""
    conn = await _connect(settings)
    if conn is None:
        return None
    other = await _connect(settings)  # the walk's second half, side by side
    try:
        exists = await conn.fetchval("SELECT to_regclass('events') IS NOT NULL")
        return await store.check_chains_in_database(conn, other) if exists else []
    finally:
        await conn.close()
        if other is not None:
            await other.close()


async def run_verify(
    settings: Settings,
    *,
    check_signatures: bool,
    quiet: bool,
    recheck_signatures: bool = False,
    processes: int | None = None,
) -> tuple[VerifyReport, float, float]:
    """Replay and check; return the report, the seconds spent reading and checking.

    Signatures: by default a record whose exact bytes, headers and signing key the
    audit service already verified at ingest reuses that stored verdict, and every
    other record is checked with Ed25519 here; ``recheck_signatures`` checks them all.
    PostgreSQL walks the store's hash chains (two backends) while the log is read and
    checked.

    ``processes`` (default: the CPUs this process may use) share the log by partition
    number (see ``replay_shards``); their findings are merged when no case and no event
    id crosses them, and otherwise the log is checked again in this process alone, so
    the report is always the one a single replay gives.
    """
    started = time.perf_counter()
    partitions = await partitions_matching(settings, event_log_pattern(settings))
    shards = shard_count(partitions, default_processes() if processes is None else processes)
    now = utcnow()
    with gc_paused():
        sharded = (
            # Forked before this replay opens anything of its own. Each child starts its
            # own event loop and connections and never touches what it inherited.
            _ShardedReplay.start(
                settings,
                partitions,
                shards,
                now=now,
                check_signatures=check_signatures,
                recheck_signatures=recheck_signatures,
            )
            if shards > 1
            else None
        )
        chain = asyncio.create_task(_store_violations(settings))
        try:
            report: VerifyReport | None = None
            if sharded is not None:
                report, read_s = await sharded.collect(quiet=quiet)
                if report is None and not quiet:
                    err.print(
                        "a case or an event id spans the replay's processes: "
                        "checking the whole log again in one process"
                    )
            if report is None:
                report, read_s = await _verify_here(
                    settings,
                    partitions,
                    now=now,
                    check_signatures=check_signatures,
                    recheck_signatures=recheck_signatures,
                    quiet=quiet,
                )
            broken = await chain
        except BaseException:
            chain.cancel()
            raise
        finally:
            if sharded is not None:
                sharded.stop()
    if broken:
        report.violations.extend(broken)
    return report, read_s, time.perf_counter() - started


async def _verify_here(
    settings: Settings,
    partitions: Sequence[TopicPartition],
    *,
    now: datetime,
    check_signatures: bool,
    recheck_signatures: bool,
    quiet: bool,
) -> tuple[VerifyReport, float]:
    """The whole log read and checked in this process; the report and the reading time."""
    started = time.perf_counter()
    verdicts = _load_verdicts(settings, (1, 0), reuse=check_signatures and not recheck_signatures)
    try:
        records = await _read_with_progress(settings, partitions, quiet=quiet)
    except BaseException:
        verdicts.cancel()
        raise
    read_s = time.perf_counter() - started
    # Loaded now, not beside the reading: YAML parsing holds the GIL, and the
    # database is still walking the hash chains meanwhile.
    catalogue = default_catalogue(settings.catalogue_dirs)
    report = verify(
        records,
        catalogue=catalogue,
        keys=PublicKeys.load(settings.keys_dir),
        now=now,
        check_signatures=check_signatures,
        verified=await verdicts,
    )
    return report, read_s


def default_processes() -> int:
    """The CPUs this process may run on (at most 8): how many share a replay. One where
    processes cannot be forked (Windows)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def shard_count(partitions: Sequence[TopicPartition], wanted: int) -> int:
    """How many processes can share a replay of ``partitions`` so that each case is read
    whole by one of them: at most ``wanted``.

    Producers key every event by its case id, so a case sits in partition ``h % n`` of
    each ``n``-partition topic, for one hash ``h`` of its id. Process ``i`` of ``k`` reads
    the partitions numbered ``i`` modulo ``k``. When every multi-partition topic has the
    same ``n`` (as the services create them), a case's partition number is the same in
    every topic, so any ``k`` up to ``n`` keeps it in one process. Otherwise ``k`` must
    divide every ``n``: then ``(h % n) % k`` is ``h % k`` in every topic. Single-partition
    topics (the operators' redrives) go to the first process."""
    counts: dict[str, int] = {}
    for tp in partitions:
        counts[tp.topic] = max(counts.get(tp.topic, 0), tp.partition + 1)
    sizes = {n for n in counts.values() if n > 1}
    if wanted <= 1 or not sizes:
        return 1
    if len(sizes) == 1:
        return min(wanted, *sizes)
    common = math.gcd(*sizes)
    return max(k for k in range(1, min(wanted, common) + 1) if common % k == 0)


def replay_shards(partitions: Sequence[TopicPartition], shards: int) -> list[list[TopicPartition]]:
    """The partitions each of ``shards`` processes reads (see ``shard_count``)."""
    return [[tp for tp in partitions if tp.partition % shards == i] for i in range(shards)]


class _ShardedReplay:
    """Replay processes forked from this one, one per shard of the log's partitions.

    Each reads its partitions, loads the stored verdicts on them, runs ``verify_shard``
    and sends back its ``ShardReport`` and reading time; ``collect`` merges them.
    Forked rather than spawned: a child starts in milliseconds with every module already
    imported, where a fresh interpreter takes seconds to import the audit's code.
    """

    def __init__(
        self,
        processes: list[multiprocessing.process.BaseProcess],
        pipes: list[Connection],
        progress: Any,
    ) -> None:
        self._processes = processes
        self._pipes = pipes
        self._progress = progress  # per shard: records read, records to read

    @classmethod
    def start(
        cls,
        settings: Settings,
        partitions: Sequence[TopicPartition],
        shards: int,
        *,
        now: datetime,
        check_signatures: bool,
        recheck_signatures: bool,
    ) -> _ShardedReplay:
        context = multiprocessing.get_context("fork")
        progress = context.Array("q", 2 * shards, lock=False)
        processes: list[multiprocessing.process.BaseProcess] = []
        pipes: list[Connection] = []
        for index, own in enumerate(replay_shards(partitions, shards)):
            receive, send = context.Pipe(duplex=False)
            job = _ShardJob(
                settings, own, (shards, index), now, check_signatures, recheck_signatures
            )
            process = context.Process(
                target=_replay_shard,
                args=(job, send, progress),
                name=f"onedoor-audit-verify-{index}",
                daemon=True,
            )
            process.start()
            send.close()  # the child holds the sending end; EOF here when it is gone
            processes.append(process)
            pipes.append(receive)
        return cls(processes, pipes, progress)

    async def collect(self, *, quiet: bool) -> tuple[VerifyReport | None, float]:
        """The merged report (``None`` when the shards are not independent) and the
        longest reading time of any shard."""
        with _progress(quiet) as (progress, task):
            results = asyncio.gather(
                *(asyncio.to_thread(self._receive, i) for i in range(len(self._pipes)))
            )
            while not results.done():
                counts = list(self._progress)
                progress.update(task, completed=sum(counts[0::2]), total=sum(counts[1::2]) or None)
                await asyncio.wait([results], timeout=0.1)
            parts = await results
        report = merge_shards(part for part, _ in parts)
        return report, max(read_s for _, read_s in parts)

    def _receive(self, index: int) -> tuple[ShardReport, float]:
        try:
            outcome, result = self._pipes[index].recv()
        except EOFError:
            self._processes[index].join(5)
            code = self._processes[index].exitcode
            raise RuntimeError(
                f"replay process {index} ended without a report (exit code {code})"
            ) from None
        if outcome != "ok":
            raise RuntimeError(f"replay process {index} failed: {result}")
        return cast("tuple[ShardReport, float]", result)

    def stop(self) -> None:
        """Wait for the children (each exits once it has sent its report); kill any
        still running, e.g. when the replay was interrupted."""
        for process in self._processes:
            process.join(0 if process.exitcode is not None else 2)
            if process.is_alive():
                process.kill()
                process.join()
        for pipe in self._pipes:
            pipe.close()


@dataclass(frozen=True)
class _ShardJob:
    settings: Settings
    partitions: list[TopicPartition]
    shard: tuple[int, int]  # (shards, index)
    now: datetime
    check_signatures: bool
    recheck_signatures: bool


def _replay_shard(job: _ShardJob, send: Connection, progress: Any) -> None:
    """A replay process's whole life: check its shard, send the outcome, exit."""
    try:
        outcome: tuple[str, Any] = ("ok", asyncio.run(_check_shard(job, progress)))
    except BaseException as exc:  # noqa: BLE001 - whatever it is, the parent must hear it
        outcome = ("error", f"{type(exc).__name__}: {exc}")
    send.send(outcome)
    send.close()


async def _check_shard(job: _ShardJob, progress: Any) -> tuple[ShardReport, float]:
    started = time.perf_counter()
    settings = job.settings
    verdicts = _load_verdicts(
        settings, job.shard, reuse=job.check_signatures and not job.recheck_signatures
    )
    index = job.shard[1]

    def on_progress(done: int, total: int) -> None:
        progress[2 * index], progress[2 * index + 1] = done, total

    records = await read_log(settings, on_progress, job.partitions)
    read_s = time.perf_counter() - started
    part = verify_shard(
        records,
        catalogue=default_catalogue(settings.catalogue_dirs),
        keys=PublicKeys.load(settings.keys_dir),
        now=job.now,
        check_signatures=job.check_signatures,
        verified=await verdicts,
    )
    return part, read_s


@contextmanager
def _progress(quiet: bool) -> Iterator[tuple[Progress, TaskID]]:
    with Progress(
        TextColumn("replaying the log"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet,
    ) as progress:
        yield progress, progress.add_task("read", total=None)


async def _read_with_progress(
    settings: Settings, partitions: Sequence[TopicPartition], *, quiet: bool
) -> list[LogRecord]:
    with _progress(quiet) as (progress, task):
        return await read_log(
            settings,
            lambda done, total: progress.update(task, completed=done, total=total),
            partitions,
        )


def _violation_json(v: Any) -> dict[str, Any]:
    return {
        "kind": v.kind,
        "severity": v.severity,
        "case_id": str(v.case_id) if v.case_id else None,
        "event_id": str(v.event_id) if v.event_id else None,
        "topic": v.topic,
        "partition": v.partition,
        "offset": v.offset,
        "detail": v.detail,
    }


async def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    report, read_s, total_s = await run_verify(
        settings,
        check_signatures=not args.no_signatures,
        quiet=args.json,
        # Callers that build their own Namespace (deploy.demo) may not name the new flag.
        recheck_signatures=getattr(args, "recheck_signatures", False),
        processes=getattr(args, "processes", None),
    )
    rate = report.records / total_s if total_s > 0 else 0.0
    errors = report.errors()
    if args.json:
        print(
            json.dumps(
                {
                    "records": report.records,
                    "events": report.events,
                    "cases": report.cases,
                    "violations": len(errors),
                    "flags": len(report.violations) - len(errors),
                    "by_kind": report.by_kind(),
                    "seconds": round(total_s, 3),
                    "events_per_s": round(rate),
                    "processes": report.processes,
                    "signatures_checked": report.signatures_checked,
                    "signatures_reused": report.signatures_reused,
                    "details": [_violation_json(v) for v in report.violations],
                },
                indent=2,
            )
        )
        return 0 if not errors else 1
    table = Table(title="onedoor-audit verify", show_header=False)
    table.add_row("records read", str(report.records))
    table.add_row("distinct events", str(report.events))
    table.add_row("cases", str(report.cases))
    table.add_row("violations", str(len(errors)))
    table.add_row("flags (not errors)", str(len(report.violations) - len(errors)))
    for kind, n in sorted(report.by_kind().items()):
        table.add_row(f"  {kind}", str(n))
    if args.no_signatures:
        table.add_row("signatures", "not checked (--no-signatures)")
    else:
        table.add_row(
            "signatures",
            f"{report.signatures_checked} checked now, "
            f"{report.signatures_reused} verified at ingest (identical bytes)",
        )
    table.add_row(
        "replay time (s)",
        f"{total_s:.2f} (reading {read_s:.2f}; {report.processes} process(es))",
    )
    table.add_row("events per second", f"{rate:,.0f}")
    out.print(table)
    shown = report.violations if args.flags else errors
    for v in shown:
        case = v.case_id or "-"
        out.print(
            f"{v.severity.upper():5} {v.kind:26} case {case} event {v.event_id or '-'} "
            f"at {v.topic}/{v.partition}@{v.offset}: {v.detail}"
        )
    out.print("[green]zero violations[/]" if not errors else f"[red]{len(errors)} violation(s)[/]")
    return 0 if not errors else 1


async def _with_store(settings: Settings, fn: Callable[[Any], Any]) -> Any:
    # The same migrations, in the same order, as the audit service applies at start-up.
    await migrate_dsn(settings.dsn(), SCHEMA, [MESSAGING_MIGRATIONS, *MIGRATIONS])
    pool = await create_pool(settings.dsn(), SCHEMA, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            return await fn(conn)
    finally:
        await pool.close()


async def cmd_history(settings: Settings, args: argparse.Namespace) -> int:
    try:
        case_id = UUID(args.case_id)
    except ValueError:
        err.print(f"not a case id: {args.case_id!r} (a UUID, as returned by POST /cases)")
        return 2
    view = await _with_store(settings, lambda conn: queries.history(conn, case_id))
    if view is None:
        err.print(f"no case {case_id} in the audit store (is the audit service running?)")
        return 1
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    out.print(
        f"case {view['case_id']}  receipt {view['receipt_no']}  item {view['item_code']}  "
        f"outcome {view['outcome'] or 'open'}{' (on the spot)' if view['on_spot'] else ''}"
    )
    table = Table(show_header=True)
    for column in ("at", "event", "step", "department", "detail"):
        table.add_column(column)
    for entry in view["timeline"]:
        step = entry["step_index"]
        table.add_row(
            entry["at"],
            entry["event_type"],
            "" if step is None else str(step + 1),
            entry["department"] or "",
            entry["detail"],
        )
    out.print(table)
    return 0


async def cmd_rebuild(settings: Settings, _: argparse.Namespace) -> int:
    async def rebuild(conn: Any) -> tuple[str, str]:
        async with conn.transaction():
            live = store.views_digest(await store.live_views(conn))
            rebuilt = await store.rebuild(conn)
        return live, rebuilt

    live, rebuilt = await _with_store(settings, rebuild)
    out.print(f"live projection digest    {live}")
    out.print(f"rebuilt projection digest {rebuilt}")
    if live != rebuilt:
        out.print("[red]the rebuilt projection differs from the live one[/]")
        return 1
    out.print("[green]identical[/]")
    return 0


async def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    data = await _with_store(settings, queries.statistics)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["dimension", "key", "measure", "value"])
        for dimension in ("per_item", "per_department", "per_community", "per_day"):
            for key, counters in data[dimension].items():
                for measure, value in counters.items():
                    writer.writerow([dimension, key, measure, value])
        for reason, n in data["reasons"].items():
            writer.writerow(["reasons", reason, "count", n])
        for name, value in data["accept_to_close_ms"].items():
            writer.writerow(["accept_to_close_ms", "", name, value])
        writer.writerow(["on_spot_share", "", "share", data["on_spot_share"]])
        return 0
    for dimension in ("per_item", "per_department", "per_community", "per_day"):
        rows = data[dimension]
        if not rows:
            continue
        measures = sorted({m for counters in rows.values() for m in counters})
        table = Table(title=dimension.replace("_", " "))
        table.add_column("key")
        for m in measures:
            table.add_column(m, justify="right")
        for key, counters in rows.items():
            table.add_row(key, *(str(counters.get(m, 0)) for m in measures))
        out.print(table)
    out.print(f"on-the-spot share: {data['on_spot_share']:.1%}")
    out.print(f"rejection reasons: {data['reasons']}")
    out.print(f"accept-to-close ms: {data['accept_to_close_ms']}")
    out.print(f"open past promised time: {len(data['open_past_promise'])}")
    return 0


async def cmd_dlq(settings: Settings, args: argparse.Namespace) -> int:
    if args.dlq_command == "redrive":
        try:
            recorded = await dlq.redrive(
                settings,
                args.topic,
                args.partition,
                args.offset,
                reason=args.reason,
                operator=args.operator,
            )
        except dlq.RedriveError as exc:
            err.print(f"cannot re-drive: {exc}")
            return 1
        out.print(
            f"re-driven {args.topic}/{args.partition}@{args.offset} to {recorded.original_topic}; "
            f"recorded as DeadLetterRedriven {recorded.event_id} on {OPS_REDRIVES}"
        )
        return 0
    done = await dlq.redrives(settings)
    rows = [letter.summary(done) for letter in await dlq.dead_letters(settings)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"dead letters ({len(rows)})")
    for column in ("dlq record", "original", "reason", "consumer", "event", "error", "re-driven"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["dlq"],
            row["original"],
            row["reason"] or "",
            row["consumer"] or "",
            row["event_type"] or "-",
            row["error"],
            row["redriven_by"] or "",
        )
    out.print(table)
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onedoor-audit", description="onedoor's auditor tools")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser(
        "verify",
        help="replay the whole log and check every invariant",
        description="Replay every event-log topic from offset 0 and check every invariant. "
        "Signatures: the audit service checks each record's Ed25519 signature once, when it "
        "ingests the record, and keeps the verdict in its append-only store under a SHA-256 "
        "of the signer's public key, the signature headers and the exact value bytes. By "
        "default verify reuses a good verdict only for a record whose digest matches exactly "
        "(byte-identical record, same headers, same key) and whose MAC checks under the "
        "audit's key in ONEDOOR_KEYS_DIR, and checks every other record's signature itself "
        "(not ingested yet, or altered since). Without the audit's key every signature is "
        "checked.",
    )
    v.add_argument("--json", action="store_true")
    sig = v.add_mutually_exclusive_group()
    sig.add_argument(
        "--recheck-signatures",
        action="store_true",
        help="ignore the verdicts stored at ingest and check every signature with Ed25519 "
        "again (slow: about 8,000 records/s per core)",
    )
    sig.add_argument("--no-signatures", action="store_true", help="skip Ed25519 checks")
    v.add_argument("--flags", action="store_true", help="list flags (failed reviews) too")
    v.add_argument(
        "--processes",
        type=_positive,
        default=None,
        metavar="N",
        help="processes that share the replay, each reading some partitions (default: the "
        "CPUs available, at most 8); 1 replays in this process alone. The report is the same "
        "either way",
    )
    h = sub.add_parser("history", help="one case's timeline")
    h.add_argument("case_id")
    h.add_argument("--json", action="store_true")
    sub.add_parser("rebuild", help="rebuild the projection from the store; compare digests")
    s = sub.add_parser("stats", help="statistics from the projection")
    fmt = s.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    d = sub.add_parser("dlq", help="dead-letter queues: list, re-drive after a fix")
    dsub = d.add_subparsers(dest="dlq_command", required=True)
    dl = dsub.add_parser("list", help="every dead letter, with its reason")
    dl.add_argument("--json", action="store_true")
    dr = dsub.add_parser("redrive", help="put one dead letter back on its original topic")
    dr.add_argument("topic", help="the DLQ topic, e.g. dept.hr_registration.tasks.dlq")
    dr.add_argument("partition", type=int)
    dr.add_argument("offset", type=int)
    dr.add_argument("--reason", required=True, help="why it is safe to process now")
    dr.add_argument("--operator", default="operator", help="who re-drives it")
    args = parser.parse_args(argv)
    settings = get_settings()
    commands = {
        "verify": cmd_verify,
        "history": cmd_history,
        "rebuild": cmd_rebuild,
        "stats": cmd_stats,
        "dlq": cmd_dlq,
    }
    try:
        return asyncio.run(commands[args.command](settings, args))
    except (OSError, asyncpg.PostgresError) as exc:
        err.print(
            f"cannot reach the stack: {type(exc).__name__}: {exc}. Check KAFKA_BOOTSTRAP_SERVERS "
            "and DATABASE_URL (make stack-up prints them)."
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
