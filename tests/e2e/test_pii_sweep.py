"""Privacy by design (issue 17 item 5), end to end: after a realistic run, an erasure
and a dead-lettered task, no clear resident ID number or mobile number is left on any
topic (dead-letter queues included), in any table of any service, or in any service's
log, but where the design keeps one (ALLOWED, each with its reason).

The counts per topic, table and log are printed (``-s``) for the record: what the same
sweep found before sealing is in docs/privacy.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import date

import asyncpg
import httpx
import pytest
from aiokafka import TopicPartition

from deploy.demo import build_requests
from services.catalogue import default_catalogue
from shared.contracts.identity import validate_resident_id
from shared.messaging.kafka import make_admin, read_to_end
from tests.conftest import Stack
from tests.e2e.harness import Pipeline, free_port, read_topic, republish, run_services, wait_closed
from tests.support.builders import case_body, person
from tests.support.staff import make_staff
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

SERVICES = ["intake", "router", "hr_registration", "social_security", "deadlines", "audit"]
CASES = 60

# Where a clear value may stay, and why. Everything else must hold none.
ALLOWED = {
    # The phone a citizen's one-time code is sent to (services.intake.citizen); intake
    # alone holds it, and erasure deletes it with the person's data key.
    "table intake.citizen_contacts",
}

_ID18 = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
_ID15 = re.compile(
    r"(?<![0-9A-Za-z])[1-9][0-9]{5}([0-9]{2})([01][0-9])([0-3][0-9])[0-9]{3}(?![0-9A-Za-z])"
)
_PHONE = re.compile(r"(?<![0-9A-Za-z])(?:\+?86)?1[3-9][0-9]{9}(?![0-9A-Za-z])")


def _old_id(match: re.Match[str]) -> bool:
    year, month, day = (int(g) for g in match.groups())
    try:
        date(1900 + year, month, day)
    except ValueError:
        return False
    return True


def personal(text: str) -> int:
    """How many clear resident IDs (18 characters with a valid check character, or the
    old 15-digit form with a real birth date) and mobile numbers ``text`` holds."""
    ids = sum(
        1
        for m in _ID18.finditer(text)
        if validate_resident_id(m.group().upper(), today=date.max) is None
    )
    old = sum(1 for m in _ID15.finditer(text) if _old_id(m))
    return ids + old + len(_PHONE.findall(text))


async def sweep_topics(pipeline: Pipeline) -> Counter[str]:
    settings = pipeline.settings
    admin = make_admin(settings)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
    finally:
        await admin.close()
    found: Counter[str] = Counter()
    for name in sorted(names):
        parts = [TopicPartition(name, p) for p in range(settings.topic_partitions)]
        count = 0
        for record in await read_to_end(settings, parts):
            text = (record.value or b"").decode("utf-8", "replace")
            headers = " ".join(v.decode("utf-8", "replace") for _, v in record.headers or ())
            count += personal(text) + personal(headers)
        found[f"topic {name.removeprefix(settings.topic_prefix)}"] = count
    return found


async def sweep_tables(database_url: str) -> Counter[str]:
    conn = await asyncpg.connect(database_url)
    found: Counter[str] = Counter()
    try:
        tables = await conn.fetch(
            """SELECT table_schema, table_name FROM information_schema.tables
               WHERE table_type = 'BASE TABLE'
                 AND table_schema NOT IN ('pg_catalog', 'information_schema')
               ORDER BY 1, 2"""
        )
        for t in tables:
            name = f'"{t["table_schema"]}"."{t["table_name"]}"'
            rows = await conn.fetch(f"SELECT * FROM {name}")  # noqa: S608 - catalogue names
            key = f"table {t['table_schema']}.{t['table_name']}"
            # Every value as text; bytea (the audit keeps each record's bytes) decoded.
            found[key] = sum(personal(_text(v)) for r in rows for v in r.values())
    finally:
        await conn.close()
    return found


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def sweep_logs(pipeline: Pipeline) -> Counter[str]:
    return Counter(
        {
            f"log {p.name}": personal(p.read_text(errors="replace"))
            for p in pipeline.logs.glob("*.log")
        }
    )


@pytest.fixture(scope="module")
def audit_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def pipeline(
    stack: Stack, database_url: str, audit_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    with run_services(
        {name: ["-m", f"services.{name}"] for name in SERVICES},
        kafka=stack.kafka,
        database_url=database_url,
        logs=tmp_path_factory.mktemp("logs"),
        service_env={"audit": {"ONEDOOR_HTTP_PORT": str(audit_port)}}
        | {name: {"ONEDOOR_HEALTH_PORT": str(free_port())} for name in SERVICES[1:-1]},
    ) as pipeline:
        yield pipeline


def cli(
    pipeline: Pipeline, role: str, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    module = "services.audit.cli" if role == "auditor" else "services.intake.admin"
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=pipeline.env_of(role),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def run_cases(pipeline: Pipeline, audit_port: int, erased: dict[str, str]) -> list[str]:
    requests = [body for body, _ in build_requests(default_catalogue(), CASES, seed=17)]
    requests.append(
        case_body(
            "HR-JOB-REGISTRATION", erased, {"education": "college", "desired_occupation": "cook"}
        )
    )
    ids = []
    async with httpx.AsyncClient(
        base_url=pipeline.base, timeout=30, headers=pipeline.auth
    ) as client:
        for body in requests:
            resp = await client.post("/cases", json=body)
            if resp.status_code in (200, 201):
                ids.append(resp.json()["case_id"])
        for case_id in ids:
            await wait_closed(client, case_id)
    unseen = list(ids)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{audit_port}", timeout=10, headers=pipeline.auditor
    ) as audit:

        async def audit_has_every_close() -> bool:
            while unseen:
                resp = await audit.get(f"/cases/{unseen[0]}/history")
                if resp.status_code != 200 or resp.json()["closed_at"] is None:
                    return False
                unseen.pop(0)
            return True

        await wait_for(audit_has_every_close, 90, "the audit has every case closed", interval=0.2)
    return ids


async def test_no_clear_id_or_phone_is_left_where_the_design_says_none(
    pipeline: Pipeline, audit_port: int, database_url: str
) -> None:
    erased = person()
    await run_cases(pipeline, audit_port, erased)

    # Erase one person (an admin, the ID number on stdin): audited on the log, and verify
    # and the statistics still hold over the ciphertext left behind.
    await make_staff(database_url, "admin-1")
    done = cli(
        pipeline,
        "intake",
        "erase",
        "--by",
        "admin-1",
        "--reason",
        "request 2026-17",
        stdin=erased["id_number"] + "\n",
    )
    assert done.returncode == 0, done.stderr
    assert erased["id_number"] not in done.stdout + done.stderr

    async def erasure_logged() -> bool:
        return any(
            e.event_type == "PersonErased"
            for *_, e in await read_topic(pipeline.settings, "privacy.erasures")
        )

    await wait_for(erasure_logged, 30, "PersonErased on privacy.erasures", interval=0.2)
    verified = cli(pipeline, "auditor", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    stats = cli(pipeline, "auditor", "stats", "--json")
    assert stats.returncode == 0, stats.stderr

    # A department's task dead-lettered (put on another department's topic): its copy in
    # the DLQ is as sealed as the original.
    tasks = await read_topic(pipeline.settings, "dept.hr_registration.tasks")
    _, _, value, task = tasks[0]
    await republish(
        pipeline.settings, "dept.social_security.tasks", value, str(task.case_id).encode()
    )

    async def dead_lettered() -> bool:
        return bool(await read_topic(pipeline.settings, "dept.social_security.tasks.dlq"))

    await wait_for(dead_lettered, 60, "the misplaced task dead-lettered", interval=0.2)

    # dict, not Counter: a Counter's | drops the zero counts this report must show.
    counts = {**await sweep_topics(pipeline), **await sweep_tables(database_url)}
    counts |= sweep_logs(pipeline)
    print("\nPII sweep (clear resident IDs + mobile numbers):")
    for place, n in sorted(counts.items()):
        print(f"  {place:<60} {n:>6}{'  (allowed)' if place in ALLOWED else ''}")
    leaks = {p: n for p, n in counts.items() if n and p not in ALLOWED}
    assert leaks == {}
    assert any(p.startswith("topic dept.social_security.tasks.dlq") for p in counts)
    assert counts["table intake.citizen_contacts"] > 0  # the sweep sees clear values
