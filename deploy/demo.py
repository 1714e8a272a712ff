"""``make demo``: the whole pipeline on the local stack, driven the way windows drive it.

Starts the stack and the services (each its own process), submits realistic cases over
HTTP (a mix over the catalogue, a few bad requests, some retried with the same
Idempotency-Key), waits until every accepted case is closed, prints a summary and stops
what it started. Exit code 1 when a case is still open at the deadline or a service died.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deploy import dbroles, kafka_security
from deploy import stack as local_stack
from deploy.scrape import figures, scrape_all
from services.audit.output import Terminal, print_verify_report, progress_bar
from services.audit.verifier.run import verify_log
from services.catalogue import default_catalogue
from services.intake.admin import provision
from shared.contracts.catalogue import Catalogue, Item
from shared.contracts.events import (
    CaseAccepted,
    CaseClosed,
    StepApproved,
    StepRejected,
    parse_event,
)
from shared.contracts.identity import make_resident_id, make_uscc
from shared.contracts.topology import AUDIT, CASES_ACCEPTED, CASES_ROUTING, dept_outcomes
from shared.messaging.kafka import client_options
from shared.platform.settings import Settings

console = Console()
SERVICES = ["router", "hr_registration", "social_security", "audit", "deadlines"]
HTTP_SERVICES = {"intake", "audit"}  # uvicorn apps; the others serve /health on their own port
REGIONS = ["110105", "110108", "310104", "440305", "330106", "510107"]
SURNAMES = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu"]
GIVEN = ["Wei", "Fang", "Min", "Jing", "Lei", "Yan", "Jun", "Tao", "Ming", "Hua"]
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"


@dataclass
class Person:
    name: str
    id_number: str
    phone: str
    kind: str


def _person(rng: random.Random) -> Person:
    birth = date(1958, 1, 1) + timedelta(days=rng.randrange(0, 46 * 365))
    rid = make_resident_id(rng.choice(REGIONS), birth, rng.randrange(0, 1000))
    phone = f"1{rng.choice('3456789')}{rng.randrange(0, 10**9):09d}"
    return Person(f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}", rid, phone, "natural")


def _company(rng: random.Random) -> Person:
    body = "91" + rng.choice(REGIONS) + "".join(rng.choice(USCC_CHARS) for _ in range(9))
    phone = f"1{rng.choice('3456789')}{rng.randrange(0, 10**9):09d}"
    name = f"{rng.choice(SURNAMES)} {rng.choice(['Trading', 'Logistics', 'Foods', 'Tech'])} Co."
    return Person(name, make_uscc(body), phone, "legal")


def _form(item: Item, rng: random.Random) -> dict[str, Any]:
    form: dict[str, Any] = {}
    for spec in item.required_fields:
        if spec.type == "int":
            low = spec.min if spec.min is not None else 0
            high = spec.max if spec.max is not None else max(low + 60, 60)
            if spec.name == "insured_months":
                high = 150  # from the item's minimum: some applicants fall short of 12 months
            if spec.name == "course_hours":
                low, high = 20, 200
            form[spec.name] = rng.randint(low, min(high, low + 200))
        elif spec.type == "date":
            form[spec.name] = (
                date(2026, 11, 1) - timedelta(days=rng.randrange(1, 300))
            ).isoformat()
        elif spec.type == "bool":
            form[spec.name] = rng.random() < 0.5
        else:
            form[spec.name] = f"{spec.label or spec.name} {rng.randrange(1, 99)}"
    return form


def _community(rng: random.Random) -> str:
    return f"{rng.choice(REGIONS)}{rng.randrange(1, 20):03d}{rng.randrange(1, 30):03d}"


def build_requests(
    catalogue: Catalogue, n: int, seed: int
) -> list[tuple[dict[str, Any], str | None]]:
    """n requests: mostly valid over the whole catalogue, a few bad ones, some retried."""
    rng = random.Random(seed)
    run_tag = uuid.uuid4().hex[:8]  # keys never collide with an earlier run's
    items = sorted(catalogue.items.values(), key=lambda i: i.code)
    people = [_person(rng) for _ in range(max(50, n // 3))]
    companies = [_company(rng) for _ in range(max(10, n // 10))]
    out: list[tuple[dict[str, Any], str | None]] = []
    for i in range(n):
        item = rng.choice(items)
        who = rng.choice(people if item.applicant_kind == "natural" else companies)
        # The window and the clerk come from the clerk's sign-in, not the body; the two
        # draws that picked them stay, so a seed still gives the same mix as before.
        rng.randrange(1, 9), rng.randrange(1, 30)
        body: dict[str, Any] = {
            "item_code": item.code,
            "applicant": {
                "kind": who.kind,
                "name": who.name,
                "id_number": who.id_number,
                "phone": who.phone,
            },
            "community_code": _community(rng),
            "form": _form(item, rng),
            "channel": "mobile" if rng.random() < 0.25 else "window",
        }
        roll = rng.random()
        if roll < 0.01:
            body["applicant"]["id_number"] = body["applicant"]["id_number"][:-1] + (
                "0" if body["applicant"]["id_number"][-1] != "0" else "1"
            )  # a bad check character
        elif roll < 0.02:
            body["item_code"] = "NO-SUCH-ITEM"
        key = f"demo-{run_tag}-{i}" if rng.random() < 0.3 else None
        out.append((body, key))
    return out


@dataclass
class Run:
    accepted: dict[str, float] = field(default_factory=dict)  # case_id -> submit time
    rejected_422: Counter[str] = field(default_factory=Counter)
    retried_same_case: int = 0
    retried_other_case: int = 0


async def clerk_tokens(base: str, dsn: str, centre: str, windows: int = 8) -> list[str]:
    """Access tokens of ``windows`` clerks of ``centre`` (``demo-<centre>-W01``...), made
    (or given a fresh random password) in intake's schema, then signed in over HTTP."""
    tokens = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for n in range(1, windows + 1):
            name, password = f"demo-{centre}-W{n:02d}", secrets.token_urlsafe(18)
            await provision(dsn, name, "clerk", password, centre_id=centre, window_id=f"W{n:02d}")
            resp = await client.post("/auth/token", json={"name": name, "password": password})
            resp.raise_for_status()
            tokens.append(resp.json()["access_token"])
    return tokens


async def submit_all(
    base: str, requests: list[tuple[dict[str, Any], str | None]], tokens: list[str]
) -> Run:
    run = Run()
    rng = random.Random(7)
    sem = asyncio.Semaphore(16)
    with Progress(
        TextColumn("submitting cases"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("submit", total=len(requests))

        async def one(
            client: httpx.AsyncClient, body: dict[str, Any], key: str | None, n: int
        ) -> None:
            headers = {"Authorization": f"Bearer {tokens[n % len(tokens)]}"}
            if key:
                headers["Idempotency-Key"] = key
            async with sem:
                resp = await client.post(f"{base}/cases", json=body, headers=headers)
                if resp.status_code == 422:
                    run.rejected_422[resp.json()["detail"][0]["type"]] += 1
                else:
                    resp.raise_for_status()
                    case_id = resp.json()["case_id"]
                    run.accepted[case_id] = time.time()
                    if key and rng.random() < 0.5:
                        again = await client.post(f"{base}/cases", json=body, headers=headers)
                        again.raise_for_status()
                        if again.json()["case_id"] == case_id:
                            run.retried_same_case += 1
                        else:
                            run.retried_other_case += 1
            progress.advance(task)

        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(one(client, b, k, n) for n, (b, k) in enumerate(requests)))
    return run


@dataclass
class Observed:
    accepted_at: dict[str, datetime] = field(default_factory=dict)
    closed: dict[str, CaseClosed] = field(default_factory=dict)
    closes_per_case: Counter[str] = field(default_factory=Counter)
    dept: Counter[tuple[str, str]] = field(default_factory=Counter)


@dataclass(frozen=True)
class Watch:
    prefix: str
    departments: list[str]
    partitions: int


async def watch(
    kafka: Settings, what: Watch, ready: asyncio.Event, obs: Observed, stop: asyncio.Event
) -> None:
    """Follow the event log like an auditor: acceptance, closing and department outcomes."""
    prefix, departments = what.prefix, what.departments
    topics = [
        prefix + t
        for t in [CASES_ACCEPTED, CASES_ROUTING, *(dept_outcomes(d) for d in departments)]
    ]
    consumer = AIOKafkaConsumer(**client_options(kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        # The services create every topic with the configured partition count.
        parts = [TopicPartition(t, p) for t in topics for p in range(what.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        for tp in parts:
            await consumer.position(tp)
        ready.set()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    event = parse_event(record.value or b"")
                    cid = str(event.case_id)
                    if isinstance(event, CaseAccepted):
                        obs.accepted_at[cid] = event.occurred_at
                    elif isinstance(event, CaseClosed):
                        obs.closed[cid] = event
                        obs.closes_per_case[cid] += 1
                    elif isinstance(event, StepApproved):
                        obs.dept[(event.department, "approved")] += 1
                    elif isinstance(event, StepRejected):
                        obs.dept[(event.department, "rejected")] += 1
    finally:
        await consumer.stop()


def database_roles(dsn: str, secrets_dir: Path) -> dict[str, dict[str, str]]:
    """Each service's connection as its own database role (provisioned by ``make
    stack-up``, or by :func:`dbroles.provision` in a database of one's own)."""
    return {n: dbroles.service_env(dsn, n, secrets_dir) for n in ["intake", *SERVICES]}


def without_database(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without any database connection: no service inherits the shell's (the
    owner's, perhaps); each is given its own role's."""
    drop = {"DATABASE_URL", "ONEDOOR_DATABASE_URL", "ONEDOOR_DATABASE_PASSWORD_FILE"}
    return {k: v for k, v in env.items() if k not in drop}


def start_services(
    env: dict[str, str], log_dir: Path, http_port: int, roles: Mapping[str, Mapping[str, str]]
) -> tuple[dict[str, subprocess.Popen[bytes]], dict[str, str]]:
    """Start every service, each connected as its own database role (``roles``: its
    DATABASE_URL and password file); return the processes and each one's health URL
    (intake on ``http_port``, the consumer services on the ports after it)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    local_stack.ensure_keys_from_env(env)  # services refuse to start without their keys
    procs: dict[str, subprocess.Popen[bytes]] = {}
    health: dict[str, str] = {}
    for offset, name in enumerate(["intake", *SERVICES]):
        port = http_port + offset
        own = (
            {"ONEDOOR_HTTP_PORT": str(port)}
            if name in HTTP_SERVICES
            else {"ONEDOOR_HEALTH_PORT": str(port)}
        )
        out = (log_dir / f"{name}.log").open("ab")
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env=without_database(env) | dict(roles[name]) | own,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        health[name] = f"http://127.0.0.1:{port}/health"
    return procs, health


def stop_services(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(run: Run, obs: Observed, catalogue: Catalogue, started: float) -> Table:
    ours = set(run.accepted)
    closed = {c: e for c, e in obs.closed.items() if c in ours}
    approved = sum(1 for e in closed.values() if e.outcome == "approved")
    on_spot = sum(1 for e in closed.values() if e.on_spot)
    reasons = Counter(e.reason_code for e in closed.values() if e.outcome == "rejected")
    times = [
        (closed[c].occurred_at - obs.accepted_at[c]).total_seconds() * 1000
        for c in closed
        if c in obs.accepted_at
    ]
    table = Table(title=f"onedoor demo (catalogue {catalogue.version})", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("requests refused with 422", str(sum(run.rejected_422.values())))
    for kind, n in sorted(run.rejected_422.items()):
        table.add_row(f"  422 {kind}", str(n))
    table.add_row("retries answered with the same case", f"{run.retried_same_case}")
    table.add_row("retries answered with another case", f"{run.retried_other_case}")
    table.add_row("cases accepted", str(len(ours)))
    table.add_row("cases closed", str(len(closed)))
    table.add_row("  closed approved", str(approved))
    table.add_row("  closed rejected", str(len(closed) - approved))
    for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0] or "")):
        table.add_row(f"    rejected: {reason}", str(n))
    table.add_row("on-the-spot share of closed", f"{on_spot / max(1, len(closed)):.1%}")
    table.add_row(
        "cases closed more than once", str(sum(1 for c in ours if obs.closes_per_case[c] > 1))
    )
    table.add_row("accept-to-close p50 (ms)", f"{_pct(times, 0.50):.0f}")
    table.add_row("accept-to-close p95 (ms)", f"{_pct(times, 0.95):.0f}")
    for (dept, outcome), n in sorted(obs.dept.items()):
        table.add_row(f"{dept} steps {outcome}", str(n))
    table.add_row("wall time (s)", f"{time.monotonic() - started:.1f}")
    return table


def _dead(procs: dict[str, subprocess.Popen[bytes]]) -> list[str]:
    return [name for name, proc in procs.items() if proc.poll() is not None]


async def wait_healthy(
    procs: dict[str, subprocess.Popen[bytes]], health: dict[str, str], logs: Path
) -> None:
    """Until every service answers its health endpoint (intake provisions every topic
    before it does), or fail."""
    deadline = time.monotonic() + 90
    pending = dict(health)
    async with httpx.AsyncClient(timeout=2) as client:
        while pending:
            if _dead(procs):
                raise RuntimeError(f"service(s) died during start-up: {_dead(procs)}; see {logs}")
            for name, url in list(pending.items()):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        del pending[name]
            if time.monotonic() > deadline:
                raise RuntimeError(f"not healthy within 90 s: {', '.join(pending)}")
            await asyncio.sleep(0.3)


async def wait_closed(
    run: Run, obs: Observed, procs: dict[str, subprocess.Popen[bytes]], deadline_s: float
) -> list[str]:
    """Until every accepted case is closed, a service dies, or the deadline passes."""
    wait_until = time.monotonic() + deadline_s
    with Progress(
        TextColumn("waiting for cases to close"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("close", total=len(run.accepted))
        while True:
            done = sum(1 for c in run.accepted if c in obs.closed)
            progress.update(task, completed=done)
            dead = _dead(procs)
            if done == len(run.accepted) or dead or time.monotonic() > wait_until:
                return dead
            await asyncio.sleep(0.2)


def auditor_settings(cfg: local_stack.StackConfig, prefix: str) -> Settings:
    """What ``onedoor-audit verify`` runs with: the audit's Kafka principal, which reads
    the log, and the auditor's read-only database role."""
    auditor = dbroles.service_env(cfg.database_url, "auditor", cfg.secrets_dir)
    return kafka_security.admin_settings(
        cfg,
        database_url=SecretStr(auditor["DATABASE_URL"]),
        database_password_file=Path(auditor["ONEDOOR_DATABASE_PASSWORD_FILE"]),
        topic_prefix=prefix,
    ).as_principal(AUDIT)


async def print_results(
    table: Table, health: Mapping[str, str], cfg: local_stack.StackConfig
) -> None:
    """The summary, then a short scrape of each service's metrics."""
    console.print(table, *saved_scrape(await scrape_all(health), cfg), sep="\n")


def saved_scrape(scraped: Mapping[str, str], cfg: local_stack.StackConfig) -> list[str]:
    """Each service's whole scrape saved under ``<data>/metrics``; the lines to print:
    its key figures, one line per service."""
    save_to = cfg.data_dir / "metrics"
    save_to.mkdir(parents=True, exist_ok=True)
    lines = [f"[bold]metrics[/] (GET /metrics; whole scrapes in {save_to}):"]
    for name, text in scraped.items():
        (save_to / f"{name}.prom").write_text(text)
        lines.append(f"  {name:<16} {figures(text).line()}")
    return lines


async def demo(cases: int, deadline_s: float, seed: int) -> int:
    started = time.monotonic()
    cfg = local_stack.StackConfig.from_env()
    was_up = bool(local_stack.kafka_running(cfg) and local_stack.pg_running(cfg))
    await asyncio.to_thread(local_stack.up, cfg)  # the launcher runs its own event loop
    catalogue = default_catalogue(Settings().catalogue_dirs)
    http_port = int(os.environ.get("ONEDOOR_DEMO_HTTP_PORT", "18080"))
    prefix = os.environ.get("ONEDOOR_TOPIC_PREFIX", "")
    # Each service connects to Kafka as its own principal (its ACLs: `up` made them),
    # and to PostgreSQL as its own role.
    env = (
        kafka_security.without_principal(os.environ)
        | kafka_security.client_env(cfg)
        | {
            "ONEDOOR_LOG_JSON": "true",
            # Citizens' one-time codes go to a file in the local stack (no SMS gateway).
            "ONEDOOR_NOTIFIER": "file",
            "ONEDOOR_NOTIFIER_FILE": str(cfg.data_dir / "notifier" / "sms.jsonl"),
        }
    )
    procs, health = start_services(
        env, cfg.data_dir / "logs", http_port, database_roles(cfg.database_url, cfg.secrets_dir)
    )
    base = f"http://127.0.0.1:{http_port}"
    obs = Observed()
    stop = asyncio.Event()
    code = 1
    watcher: asyncio.Task[None] | None = None
    try:
        await wait_healthy(procs, health, cfg.data_dir / "logs")
        console.print(f"services up: {', '.join(procs)} (logs in {cfg.data_dir / 'logs'})")
        ready = asyncio.Event()
        watcher = asyncio.create_task(
            watch(
                kafka_security.admin_settings(cfg),
                Watch(prefix, sorted(catalogue.departments()), Settings().topic_partitions),
                ready,
                obs,
                stop,
            )
        )
        await asyncio.wait_for(ready.wait(), 30)
        run = await submit_all(
            base,
            build_requests(catalogue, cases, seed),
            await clerk_tokens(
                base,
                dbroles.service_dsn(cfg.database_url, "intake", cfg.secrets_dir),
                Settings().centre_id,
            ),
        )
        dead = await wait_closed(run, obs, procs, deadline_s)
        await print_results(summary(run, obs, catalogue, started), health, cfg)
        still_open = [c for c in run.accepted if c not in obs.closed]
        if dead:
            console.print(f"[red]FAILED[/]: service(s) died: {', '.join(dead)}")
        elif still_open:
            console.print(
                f"[red]FAILED[/]: {len(still_open)} accepted case(s) still open "
                f"after {deadline_s:.0f} s"
            )
        elif run.retried_other_case:
            console.print("[red]FAILED[/]: a retried request created a second case")
        else:
            console.print(f"[green]OK[/]: all {len(run.accepted)} accepted cases closed")
            console.print("[bold]onedoor-audit verify[/] (replays every topic from the start):")
            settings = auditor_settings(cfg, prefix)
            with progress_bar(quiet=False) as on_progress:
                report = await verify_log(settings, on_progress=on_progress)
            print_verify_report(report, Terminal(console=console))
            code = 1 if report.errors() else 0
    except Exception as exc:  # noqa: BLE001 - the demo reports any failure and cleans up
        console.print(f"[red]FAILED[/]: {type(exc).__name__}: {exc}")
    finally:
        stop.set()
        if watcher is not None:
            with contextlib.suppress(Exception):
                await watcher
        stop_services(procs)
        console.print("services stopped")
        if not was_up:
            await asyncio.to_thread(local_stack.down, cfg)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onedoor-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--deadline", type=float, default=180, help="seconds to wait for closes")
    parser.add_argument("--seed", type=int, default=int(uuid.uuid4().int % 100000))
    args = parser.parse_args(argv)
    return asyncio.run(demo(args.cases, args.deadline, args.seed))


if __name__ == "__main__":
    sys.exit(main())
