"""Sharing a replay between processes: which partitions each reads, the forked processes
that replay them, and the merge of their findings into one report.

Producers key every event by its case id, so a case's events sit in the same partition
number of every topic (topics of one size), and the rules judge each case alone. So
processes that each read some partition numbers find, together, what one replay finds,
as long as no case and no event id crosses them (``merge_shards`` proves that, or the
caller replays the whole log in one process).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import multiprocessing.process
import os
import time
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any, cast

from aiokafka import TopicPartition

from services.audit.catalogues import published_catalogues
from services.audit.verifier import storecheck
from services.audit.verifier.clock import Timing
from services.audit.verifier.log import LogRecord, Progress, partition_counts, read_log
from services.audit.verifier.replay import gc_paused, replay
from services.audit.verifier.report import VerifyReport, violation_order
from services.audit.verifier.stored import load_verdicts
from services.catalogue import default_catalogue
from shared.contracts.catalogue import Catalogue
from shared.messaging.signing import PublicKeys
from shared.platform.settings import Settings


@dataclass
class ShardReport:
    """``verify`` over one shard of the log (some of its partitions), with what a merge
    needs to prove the shards independent: every event id and case id the shard saw."""

    report: VerifyReport
    event_ids: set[int]  # UUID.int of every event id read (redrives aside)
    case_ids: set[int]  # UUID.int of every case an event of this shard names


def verify_shard(
    records: Iterable[LogRecord],
    *,
    catalogue: Catalogue,
    keys: PublicKeys,
    now: datetime,
    check_signatures: bool = True,
    verified: Container[bytes] = frozenset(),
    partitions: Mapping[str, int] | None = None,
    timing: Timing | None = None,
    published: Mapping[str, Catalogue] | None = None,
) -> ShardReport:
    """``verify`` over some of the log's records, with the ids a merge needs
    (``partitions``: the whole log's partition counts, as ``verify`` takes them)."""
    with gc_paused():
        return ShardReport(
            *replay(
                records,
                catalogue,
                keys,
                now,
                check_signatures=check_signatures,
                verified=verified,
                partitions=partitions,
                timing=timing,
                published=published,
            )
        )


def merge_shards(shards: Iterable[ShardReport]) -> VerifyReport | None:
    """One report for the whole log from shards checked apart, or ``None`` when they are
    not independent.

    The rules judge each case from its own events and deduplicate by event id, and every
    per-record check looks at that record alone. So when no event id and no case id
    occurs in two shards, the union of the shards' findings is exactly what ``verify``
    finds over all their records together. When one does (a case whose events sit in
    partitions of two shards, or one event id in both), the caller checks the whole log
    in one ``verify`` instead."""
    parts = list(shards)
    events: set[int] = set()
    cases: set[int] = set()
    for part in parts:
        if not events.isdisjoint(part.event_ids) or not cases.isdisjoint(part.case_ids):
            return None
        events |= part.event_ids
        cases |= part.case_ids
    violations = [v for part in parts for v in part.report.violations]
    violations.sort(key=violation_order)
    return VerifyReport(
        records=sum(p.report.records for p in parts),
        events=sum(p.report.events for p in parts),
        cases=sum(p.report.cases for p in parts),
        violations=violations,
        signatures_checked=sum(p.report.signatures_checked for p in parts),
        signatures_reused=sum(p.report.signatures_reused for p in parts),
        processes=len(parts),
        store_compared=all(p.report.store_compared for p in parts),
        store_notes=list(dict.fromkeys(n for p in parts for n in p.report.store_notes)),
    )


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


@dataclass(frozen=True)
class ShardJob:
    """What one replay process is asked to do."""

    settings: Settings
    partitions: list[TopicPartition]
    counts: dict[str, int]  # every topic's partition count (logical names)
    shard: tuple[int, int]  # (shards, index)
    now: datetime
    check_signatures: bool
    recheck_signatures: bool


class ShardedReplay:
    """Replay processes forked from this one, one per shard of the log's partitions.

    Each reads its partitions, loads the stored verdicts on them, runs ``verify_shard``
    and sends back its ``ShardReport`` and reading time; ``collect`` merges them.
    Forked rather than spawned: a child starts at once with every module already
    imported, where a fresh interpreter would import the audit's code all over again.
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
    ) -> ShardedReplay:
        context = multiprocessing.get_context("fork")
        progress = context.Array("q", 2 * shards, lock=False)
        processes: list[multiprocessing.process.BaseProcess] = []
        pipes: list[Connection] = []
        counts = partition_counts(partitions, settings.topic_prefix)
        for index, own in enumerate(replay_shards(partitions, shards)):
            receive, send = context.Pipe(duplex=False)
            job = ShardJob(
                settings, own, counts, (shards, index), now, check_signatures, recheck_signatures
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

    async def collect(self, on_progress: Progress | None) -> tuple[VerifyReport | None, float]:
        """The merged report (``None`` when the shards are not independent) and the
        longest reading time of any shard."""
        results = asyncio.gather(
            *(asyncio.to_thread(self._receive, i) for i in range(len(self._pipes)))
        )
        while not results.done():
            if on_progress is not None:
                counts = list(self._progress)
                on_progress(sum(counts[0::2]), sum(counts[1::2]))
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


def _replay_shard(job: ShardJob, send: Connection, progress: Any) -> None:
    """A replay process's whole life: check its shard, send the outcome, exit."""
    try:
        outcome: tuple[str, Any] = ("ok", asyncio.run(_check_shard(job, progress)))
    except BaseException as exc:  # noqa: BLE001 - whatever it is, the parent must hear it
        outcome = ("error", f"{type(exc).__name__}: {exc}")
    send.send(outcome)
    send.close()


async def _check_shard(job: ShardJob, progress: Any) -> tuple[ShardReport, float]:
    started = time.perf_counter()
    settings = job.settings
    verdicts = load_verdicts(
        settings, job.shard, reuse=job.check_signatures and not job.recheck_signatures
    )
    index = job.shard[1]

    def on_progress(done: int, total: int) -> None:
        progress[2 * index], progress[2 * index + 1] = done, total

    stored = storecheck.begin(settings, job.shard, job.partitions)
    records = await read_log(settings, on_progress, job.partitions)
    read_s = time.perf_counter() - started
    catalogue = default_catalogue(settings.catalogue_dirs)
    part = verify_shard(
        records,
        catalogue=catalogue,
        keys=PublicKeys.load_or_empty(settings.registry_path()),
        now=job.now,
        check_signatures=job.check_signatures,
        verified=await verdicts,
        partitions=job.counts,
        timing=Timing.of(settings),
        published=published_catalogues(catalogue, settings.audit_catalogue_archive),
    )
    await storecheck.finish(
        settings, stored, records, part.report, counts=job.counts, partitions=job.partitions
    )
    return part, read_s
