"""``onedoor-audit``: the auditor's command line.

    onedoor-audit verify [--json] [--recheck-signatures | --no-signatures]
                                                      replay the whole log, check every invariant
    onedoor-audit history CASE_ID --reason TEXT [--json]   one case's timeline (needs who
                                                      you are: ONEDOOR_TOKEN_FILE; the read is
                                                      recorded on access.audit before it prints)
    onedoor-audit access --case CASE_ID | --account NAME [--json]
                                                      who read a case, what an account read
    onedoor-audit rebuild [--replace]                 rebuild the projection, name each case
                                                      that differs
    onedoor-audit stats [--json | --csv]              counts, shares, times
    onedoor-audit dlq list | redrive TOPIC P OFFSET --reason TEXT   dead letters

Connection settings come from the environment like every service's
(KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, ONEDOOR_TOPIC_PREFIX, ONEDOOR_KEYS_DIR).

This module parses arguments and prints; the work is done by ``verifier``, ``queries``,
``store`` and ``dlq``. ``history``, ``stats`` and ``verify`` only read: they work for a
role that may only read the audit schema, and none of the commands creates or migrates
it (the audit service does, at start-up).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import uuid
from typing import Any
from uuid import UUID

import asyncpg

from services.audit import access, dlq, queries, store
from services.audit.output import Terminal, print_verify_report, progress_bar, verify_json
from services.audit.verifier.run import verify_log
from shared.contracts.access import Accessor, needs_reason, reason_problem
from shared.contracts.topology import AUDIT, OPERATOR, OPS_REDRIVES
from shared.messaging.access import AccessNotRecordedError, access_event
from shared.platform.settings import Settings, get_settings


def _err(text: str) -> None:
    Terminal(sys.stderr).line(text)


async def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    with progress_bar(quiet=args.json) as on_progress:
        report = await verify_log(
            settings,
            processes=args.processes,
            check_signatures=not args.no_signatures,
            recheck_signatures=args.recheck_signatures,
            on_progress=on_progress,
            on_note=None if args.json else _err,
        )
    if not report.chains_checked:
        _err(
            "the audit store's hash chains were not checked: the audit schema is not "
            "reachable or not migrated (start the audit service first)"
        )
    if args.json:
        print(json.dumps(verify_json(report), indent=2))
    else:
        print_verify_report(report, Terminal(), signatures=not args.no_signatures, flags=args.flags)
    return 0 if not report.errors() else 1


def _reader(settings: Settings, args: argparse.Namespace) -> Accessor | None:
    """Who runs a command that shows a case, with a good reason; None (said why) if not."""
    try:
        who = access.cli_accessor(settings, args.token_file)
    except access.IdentityError as exc:
        _err(f"refused: {exc}")
        return None
    problem = reason_problem(args.reason, required=needs_reason(who.role, who.centre, None))
    if problem is not None:
        _err(f"refused: {problem}")
        return None
    return who


async def cmd_history(settings: Settings, args: argparse.Namespace) -> int:
    try:
        case_id = UUID(args.case_id)
    except ValueError:
        _err(f"not a case id: {args.case_id!r} (a UUID, as returned by POST /cases)")
        return 2
    who = _reader(settings, args)
    if who is None:
        return 2
    async with queries.migrated_store(settings) as conn:
        view = await queries.history(conn, case_id)
    if view is None:
        _err(f"no case {case_id} in the audit store (is the audit service running?)")
        return 1
    read = access_event(
        AUDIT,
        who,
        case_id,
        fields=tuple(view),
        reason=args.reason,
        channel="cli",
        resource="onedoor-audit history",
        request_id=uuid.uuid4().hex,
    )
    try:
        await access.publish(settings, read)  # on the log before anything is shown
    except AccessNotRecordedError as exc:
        _err(f"nothing shown: {exc}")
        return 2
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    out = Terminal()
    waiting = view.get("waiting_info")
    state = (
        f"waiting_info (missing: {', '.join(waiting['missing'])})"
        if waiting
        else view["outcome"] or "open"
    )
    out.line(
        f"case {view['case_id']}  receipt {view['receipt_no']}  item {view['item_code']}  "
        f"outcome {state}{' (on the spot)' if view['on_spot'] else ''}"
    )
    rows = [
        (
            entry["at"],
            entry["event_type"],
            "" if entry["step_index"] is None else str(entry["step_index"] + 1),
            entry["department"] or "",
            entry["detail"],
        )
        for entry in view["timeline"]
    ]
    out.table(rows, columns=("at", "event", "step", "department", "detail"))
    return 0


async def cmd_access(settings: Settings, args: argparse.Namespace) -> int:
    """Who read a case (--case), what an account read (--account)."""
    async with queries.migrated_store(settings) as conn:
        if args.case is not None:
            try:
                case_id = UUID(args.case)
            except ValueError:
                _err(f"not a case id: {args.case!r} (a UUID, as returned by POST /cases)")
                return 2
            reads = await access.reads_of_case(conn, case_id)
            title = f"reads of case {case_id} ({len(reads)})"
        else:
            reads = await access.reads_by_account(conn, args.account)
            title = f"reads by {args.account} ({len(reads)})"
    if args.json:
        print(json.dumps(reads, indent=2, ensure_ascii=False))
        return 0
    Terminal().table(
        [
            (
                r["at"],
                r["case_id"],
                r["accessor"],
                r["role"],
                ", ".join(r["fields"]),
                r["reason"] or "",
                f"{r['service']}/{r['channel']}",
            )
            for r in reads
        ],
        columns=("at", "case", "accessor", "role", "fields", "reason", "through"),
        title=title,
    )
    return 0


async def cmd_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    async with queries.migrated_store(settings) as conn:
        result = await queries.rebuild_projection(conn, replace=args.replace)
    out = Terminal()
    out.line(f"live projection digest    {result.live}")
    out.line(f"rebuilt projection digest {result.rebuilt}")
    for d in result.differences:
        what = (
            "no live view"
            if d.live is None
            else "no view from the stored events"
            if d.rebuilt is None
            else f"differs in {', '.join(d.fields)}"
        )
        out.line(f"[red]case {d.case_id}[/]: {what}")
    if result.differences:
        out.line(
            f"[red]{len(result.differences)} case(s) differ from their stored events[/]: "
            + (
                "the live views were replaced, each kept in replaced_views"
                if result.replaced
                else "the live projection was left as it is (--replace rebuilds it, keeping "
                "each replaced view in replaced_views); run onedoor-audit verify to compare "
                "the store with the log"
            )
        )
        return 1
    out.line("[green]identical[/]")
    return 0


async def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    async with queries.migrated_store(settings) as conn:
        data = await queries.statistics(conn)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    if args.csv:
        _print_stats_csv(data)
        return 0
    out = Terminal()
    for dimension in ("per_item", "per_department", "per_community", "per_day"):
        rows = data[dimension]
        if not rows:
            continue
        measures = sorted({m for counters in rows.values() for m in counters})
        out.table(
            [(key, *(str(counters.get(m, 0)) for m in measures)) for key, counters in rows.items()],
            columns=("key", *measures),
            title=dimension.replace("_", " "),
            right=measures,
        )
    for dimension, rows in data.get("promises", {}).items():
        if not rows:
            continue
        measures = list(next(iter(rows.values())))
        out.table(
            [(key, *(_figure(m, counters[m]) for m in measures)) for key, counters in rows.items()],
            columns=("key", *measures),
            title=f"promises kept {dimension.replace('_', ' ')}",
            right=measures,
        )
    out.line(f"on-the-spot share: {data['on_spot_share']:.1%}")
    out.line(f"rejection reasons: {data['reasons']}")
    out.line(f"accept-to-close ms: {data['accept_to_close_ms']}")
    out.line(f"open past promised time: {len(data['open_past_promise'])}")
    out.line(f"reads of personal data by role: {data['accesses_by_role']}")
    return 0


def _figure(measure: str, value: float) -> str:
    """A share as a percentage, a count as an integer."""
    return f"{value:.1%}" if measure == "share" else str(int(value))


def _print_stats_csv(data: dict[str, Any]) -> None:
    writer = csv.writer(sys.stdout)
    writer.writerow(["dimension", "key", "measure", "value"])
    for dimension in ("per_item", "per_department", "per_community", "per_day"):
        for key, counters in data[dimension].items():
            for measure, value in counters.items():
                writer.writerow([dimension, key, measure, value])
    for dimension, rows in data.get("promises", {}).items():
        for key, counters in rows.items():
            for measure, value in counters.items():
                writer.writerow([f"promises_{dimension}", key, measure, value])
    for reason, n in data["reasons"].items():
        writer.writerow(["reasons", reason, "count", n])
    for name, value in data["accept_to_close_ms"].items():
        writer.writerow(["accept_to_close_ms", "", name, value])
    writer.writerow(["on_spot_share", "", "share", data["on_spot_share"]])
    for role, n in data["accesses_by_role"].items():
        writer.writerow(["accesses_by_role", role, "reads", n])


async def cmd_dlq(settings: Settings, args: argparse.Namespace) -> int:
    out = Terminal()
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
            _err(f"cannot re-drive: {exc}")
            return 1
        out.line(
            f"re-driven {args.topic}/{args.partition}@{args.offset} to {recorded.original_topic}; "
            f"recorded as DeadLetterRedriven {recorded.event_id} on {OPS_REDRIVES}"
        )
        return 0
    junk: list[str] = []
    done = await dlq.redrives(settings, junk)
    rows = [letter.summary(done) for letter in await dlq.dead_letters(settings)]
    for line in junk:
        _err(f"skipped on {OPS_REDRIVES}, records no re-drive: {line}")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    out.table(
        [
            (
                row["dlq"],
                row["original"],
                row["reason"] or "",
                row["consumer"] or "",
                row["event_type"] or "-",
                row["error"],
                row["redriven_by"] or "",
                "; ".join(row["problems"]),
            )
            for row in rows
        ],
        columns=(
            "dlq record",
            "original",
            "reason",
            "consumer",
            "event",
            "error",
            "re-driven",
            "problems",
        ),
        title=f"dead letters ({len(rows)})",
    )
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
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
        "checked. The audit store is held to the log both ways (missing_from_store, "
        "store_differs_from_log, not_in_log), to the audit's signature on each stored row "
        "(store_tampered) and to every checkpoint the audit signed on the log "
        "(checkpoint_mismatch).",
    )
    v.add_argument("--json", action="store_true")
    sig = v.add_mutually_exclusive_group()
    sig.add_argument(
        "--recheck-signatures",
        action="store_true",
        help="ignore the verdicts stored at ingest and check every signature with Ed25519 "
        "again (slow: every record's signature is checked anew)",
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
    h = sub.add_parser(
        "history",
        help="one case's timeline (recorded as your read of the case)",
        description="One case's timeline. It shows a case's data, so it needs who you are "
        f"(an access token from intake's POST /auth/token in the file {access.TOKEN_FILE_ENV} "
        "or --token-file names; an auditor or an admin) and why (--reason); the read is "
        "recorded on access.audit, signed with the audit's key, before anything is printed.",
    )
    h.add_argument("case_id")
    h.add_argument("--json", action="store_true")
    h.add_argument("--reason", help="why you read this case (recorded with the read)")
    h.add_argument(
        "--token-file", help=f"your access token's file (default: ${access.TOKEN_FILE_ENV})"
    )
    a = sub.add_parser(
        "access",
        help="who read a case's data, what an account read",
        description="Reads of personal data recorded on the log (PersonalDataAccessed): "
        "who, role, fields, reason, when, through which service and channel.",
    )
    which = a.add_mutually_exclusive_group(required=True)
    which.add_argument("--case", metavar="CASE_ID", help="who read this case's data")
    which.add_argument("--account", metavar="NAME", help="what this account read")
    a.add_argument("--json", action="store_true")
    r = sub.add_parser(
        "rebuild",
        help="rebuild the projection from the store; name each case that differs",
        description="Rebuild the case views from the stored events and compare them case by "
        "case with the live projection. Each case that differs is named, every time; the "
        "live projection is rewritten only when it matches, or with --replace. The evidence "
        "tables are never rewritten.",
    )
    r.add_argument(
        "--replace",
        action="store_true",
        help="rewrite the live projection even where it differs (each replaced view is "
        "kept in the append-only table replaced_views)",
    )
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Kafka principal: the audit's own (it reads every event-log topic), the operator's
    # for the dead-letter tool (it reads the DLQs and re-drives); ONEDOOR_KAFKA_USERNAME wins.
    settings = get_settings().for_service(OPERATOR if args.command == "dlq" else AUDIT)
    commands = {
        "verify": cmd_verify,
        "history": cmd_history,
        "access": cmd_access,
        "rebuild": cmd_rebuild,
        "stats": cmd_stats,
        "dlq": cmd_dlq,
    }
    try:
        return asyncio.run(commands[args.command](settings, args))
    except store.StoreNotReadyError as exc:
        _err(
            f"the audit store is not ready: {exc}. Start the audit service "
            "(python -m services.audit), which migrates its schema, then try again."
        )
        return 2
    except asyncpg.InsufficientPrivilegeError as exc:
        _err(f"the database refused: {exc}. This command needs to read the audit schema.")
        return 2
    except asyncpg.ReadOnlySQLTransactionError:
        _err(
            "the database refused a write: this role's sessions only read (the auditor's, "
            "onedoor_auditor). rebuild rewrites the projection: run it as the audit "
            "service's role (python -m deploy.stack env audit)."
        )
        return 2
    except (OSError, asyncpg.PostgresError) as exc:
        _err(
            f"cannot reach the stack: {type(exc).__name__}: {exc}. Check KAFKA_BOOTSTRAP_SERVERS "
            "and DATABASE_URL (make stack-up prints them)."
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
