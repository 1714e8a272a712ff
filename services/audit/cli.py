"""``onedoor-audit``: the auditor's command line.

    onedoor-audit verify [--json] [--no-signatures]   replay the whole log, check every invariant
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
import sys
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import asyncpg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.audit import dlq, queries, store
from services.audit.api import MIGRATIONS
from services.audit.domain import LogRecord, VerifyReport, verify
from services.audit.ingest import event_log_pattern, header
from shared.catalogue import default_catalogue
from shared.db import SHARED_MIGRATIONS, create_pool, migrate_dsn
from shared.events import utcnow
from shared.kafka import partitions_matching, read_to_end
from shared.settings import Settings, get_settings
from shared.signing import SIGNATURE_HEADER, SIGNER_HEADER, PublicKeys
from shared.topics import OPS_REDRIVES

SCHEMA = "audit"
out = Console()
err = Console(stderr=True)


async def read_log(
    settings: Settings, on_progress: Callable[[int, int], None] | None = None
) -> list[LogRecord]:
    """Every record of every event-log topic, from the first offset to the end as it is now."""
    parts = await partitions_matching(settings, event_log_pattern(settings))
    prefix = settings.topic_prefix
    return [
        LogRecord(
            topic=r.topic.removeprefix(prefix),
            partition=r.partition,
            offset=r.offset,
            value=r.value or b"",
            signer=header(r.headers, SIGNER_HEADER),
            signature=header(r.headers, SIGNATURE_HEADER),
        )
        for r in await read_to_end(settings, parts, on_progress)
    ]


async def _store_violations(settings: Settings) -> list[Any] | None:
    """Hash-chain breaks in the audit store, or None when the store is not reachable."""
    try:
        pool = await create_pool(settings.dsn(), SCHEMA, min_size=1, max_size=2)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        async with pool.acquire() as conn, conn.transaction():
            exists = await conn.fetchval("SELECT to_regclass('events') IS NOT NULL")
            return await store.check_chains(conn) if exists else []
    finally:
        await pool.close()


async def run_verify(
    settings: Settings, *, check_signatures: bool, quiet: bool
) -> tuple[VerifyReport, float, float]:
    """Replay and check; return the report, the seconds spent reading and checking."""
    started = time.perf_counter()
    with Progress(
        TextColumn("replaying the log"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet,
    ) as progress:
        task = progress.add_task("read", total=None)
        records = await read_log(
            settings, lambda done, total: progress.update(task, completed=done, total=total)
        )
    read_s = time.perf_counter() - started
    report = verify(
        records,
        catalogue=default_catalogue(settings.catalogue_dirs),
        keys=PublicKeys.load(settings.keys_dir),
        now=utcnow(),
        check_signatures=check_signatures,
    )
    chain = await _store_violations(settings)
    if chain:
        report.violations.extend(chain)
    return report, read_s, time.perf_counter() - started


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
        settings, check_signatures=not args.no_signatures, quiet=args.json
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
    table.add_row("replay time (s)", f"{total_s:.2f} (reading {read_s:.2f})")
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
    await migrate_dsn(settings.dsn(), SCHEMA, [SHARED_MIGRATIONS, *MIGRATIONS])
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onedoor-audit", description="onedoor's auditor tools")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="replay the whole log and check every invariant")
    v.add_argument("--json", action="store_true")
    v.add_argument("--no-signatures", action="store_true", help="skip Ed25519 checks")
    v.add_argument("--flags", action="store_true", help="list flags (failed reviews) too")
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
