"""``verify_log``: verify a deployment's whole event log, as ``onedoor-audit verify``
does, and return the report (the CLI and the demo print it; the drill, the bench and
the fault suite read it: its ``seconds`` and ``read_seconds`` say how long it took)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from aiokafka import TopicPartition

from services.audit.catalogues import published_catalogues
from services.audit.verifier import storecheck
from services.audit.verifier.clock import Timing
from services.audit.verifier.erasures import erasure_breaks
from services.audit.verifier.log import Progress, log_partitions, partition_counts, read_log
from services.audit.verifier.replay import gc_paused, verify
from services.audit.verifier.report import VerifyReport, violation_order
from services.audit.verifier.shards import ShardedReplay, default_processes, shard_count
from services.audit.verifier.stored import chain_breaks, load_verdicts
from services.catalogue import default_catalogue
from shared.contracts.events import utcnow
from shared.messaging.signing import PublicKeys
from shared.platform.settings import Settings


async def verify_log(
    settings: Settings,
    *,
    processes: int | None = None,
    check_signatures: bool = True,
    recheck_signatures: bool = False,
    on_progress: Progress | None = None,
    on_note: Callable[[str], None] | None = None,
) -> VerifyReport:
    """Replay every event-log topic of ``settings``' deployment and check every invariant;
    the report also holds the time spent and whether the store's chains were walked.

    Signatures: by default a record whose exact bytes, headers and signing key the
    audit service already verified at ingest reuses that stored verdict, and every
    other record is checked with Ed25519 here; ``recheck_signatures`` checks them all,
    ``check_signatures=False`` none. PostgreSQL walks the store's hash chains (two
    backends) while the log is read and checked; only reads, so a role that may only
    read the audit schema will do.

    ``processes`` (default: the CPUs this process may use) share the log by partition
    number (see ``shards``); their findings are merged when no case and no event id
    crosses them, and otherwise the log is checked again in this process alone (said
    through ``on_note``), so the report is always the one a single replay gives.
    ``on_progress`` hears how many records are read, of how many.
    """
    started = time.perf_counter()
    partitions = await log_partitions(settings)
    shards = shard_count(partitions, default_processes() if processes is None else processes)
    now = utcnow()
    with gc_paused():
        sharded = (
            # Forked before this replay opens anything of its own. Each child starts its
            # own event loop and connections and never touches what it inherited.
            ShardedReplay.start(
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
        chain = asyncio.create_task(chain_breaks(settings))
        keyed = asyncio.create_task(storecheck.keyed_breaks(settings))
        erasures = asyncio.create_task(erasure_breaks(settings))
        try:
            report: VerifyReport | None = None
            if sharded is not None:
                report, read_s = await sharded.collect(on_progress)
                if report is None and on_note is not None:
                    on_note(
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
                    on_progress=on_progress,
                )
            broken = await chain
            tampered = await keyed
            sealed_again = await erasures
        except BaseException:
            chain.cancel()
            keyed.cancel()
            erasures.cancel()
            raise
        finally:
            if sharded is not None:
                sharded.stop()
    if broken:
        report.violations.extend(broken)
    if tampered or sealed_again:
        report.violations.extend([*(tampered or ()), *sealed_again])
        report.violations.sort(key=violation_order)
    report.chains_checked = broken is not None
    report.read_seconds = read_s
    report.seconds = time.perf_counter() - started
    return report


async def _verify_here(
    settings: Settings,
    partitions: Sequence[TopicPartition],
    *,
    now: datetime,
    check_signatures: bool,
    recheck_signatures: bool,
    on_progress: Progress | None,
) -> tuple[VerifyReport, float]:
    """The whole log read and checked in this process; the report and the reading time."""
    started = time.perf_counter()
    verdicts = load_verdicts(settings, (1, 0), reuse=check_signatures and not recheck_signatures)
    stored = storecheck.begin(settings, (1, 0), partitions)
    try:
        records = await read_log(settings, on_progress, partitions)
    except BaseException:
        verdicts.cancel()
        stored.cancel()
        raise
    read_s = time.perf_counter() - started
    # Loaded now, not beside the reading: YAML parsing holds the GIL, and the
    # database is still walking the hash chains meanwhile.
    catalogue = default_catalogue(settings.catalogue_dirs)
    report = verify(
        records,
        catalogue=catalogue,
        keys=PublicKeys.load_or_empty(settings.registry_path()),
        now=now,
        check_signatures=check_signatures,
        verified=await verdicts,
        partitions=partition_counts(partitions, settings.topic_prefix),
        timing=Timing.of(settings),
        published=published_catalogues(catalogue, settings.audit_catalogue_archive),
    )
    counts = partition_counts(partitions, settings.topic_prefix)
    await storecheck.finish(settings, stored, records, report, counts=counts, partitions=partitions)
    return report, read_s
