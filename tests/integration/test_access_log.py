"""Who saw whose data (issue 16, item 6), on the real broker and database: every read of
a case's personal data over HTTP or the command line is on the log as a signed
PersonalDataAccessed before the data is shown; a refused read records nothing; a read
that cannot be recorded shows nothing; a forged read is flagged by verify; and
``onedoor-audit access`` answers "who read this case" and "what did this account read"."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from starlette.types import ASGIApp

from deploy import kafka_security
from services.audit.main import build as build_audit
from services.audit.verifier.run import verify_log
from services.intake.api import CasesFront
from services.intake.main import build as build_intake
from shared.contracts.access import Accessor
from shared.contracts.events import PersonalDataAccessed, parse_event
from shared.contracts.topology import ACCESS_AUDIT, ACCESS_INTAKE
from shared.messaging.access import access_event
from shared.messaging.kafka import make_producer, partitions_matching, read_to_end
from shared.messaging.signing import SIGNATURE_HEADER, SIGNER_HEADER, PublicKeys, Signer
from shared.platform.db import connect
from shared.platform.runtime import RunningService, running
from shared.platform.settings import Settings
from tests.e2e.test_pipeline import BENEFIT_FORM
from tests.support.builders import case_body, person
from tests.support.staff import bearer, make_staff, sign_in
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

WHY = "投诉复核 complaint 2026-118"
REASON = {"Onedoor-Access-Reason": urllib.parse.quote(WHY)}


@dataclass
class Stack:
    intake: CasesFront
    audit: ASGIApp
    live_intake: RunningService
    settings: Settings
    tokens: dict[str, dict[str, str]]
    applicant: dict[str, Any]
    case_id: str


def http(app: ASGIApp, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://svc", headers=headers
    )


@contextlib.asynccontextmanager
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    """Intake and the audit in-process, every kind of staff signed in, one case filed by
    the clerk of C01 and stored by the audit."""
    async with (
        running(await build_intake(settings)) as intake,
        running(await build_audit(settings.model_copy(update={"audit_nice": 0}))) as audit,
    ):
        front, app = intake.http_app(), audit.http_app()
        assert isinstance(front, CasesFront)
        assert app is not None
        await make_staff(settings.dsn())
        async with http(front) as client:
            names = ("clerk-c01-w01", "clerk-c02-w01", "officer-ss", "auditor-1", "admin-1")
            tokens = {n: bearer((await sign_in(client, n))["access_token"]) for n in names}
        applicant = person()
        body = case_body("SS-UNEMPLOYMENT-BENEFIT", applicant, BENEFIT_FORM)
        async with http(front, tokens["clerk-c01-w01"]) as client:
            made = await client.post("/cases", json=body)
        assert made.status_code == 201, made.text
        case_id = made.json()["case_id"]
        await wait_for(lambda: audit_has(settings, case_id), 30, "the audit has the case")
        yield Stack(front, app, intake, settings, tokens, applicant, case_id)


async def audit_has(settings: Settings, case_id: str) -> bool:
    conn = await connect(settings.dsn(), "audit", name="test")
    try:
        return bool(
            await conn.fetchval("SELECT count(*) FROM case_views WHERE case_id = $1", UUID(case_id))
        )
    finally:
        await conn.close()


Read = tuple[PersonalDataAccessed, dict[str, str], bytes]  # event, headers, exact bytes


async def reads_on(settings: Settings, topic: str) -> list[Read]:
    """Every record of an access topic: the event, its headers, its exact bytes."""
    parts = await partitions_matching(settings, rf"^{re.escape(settings.topic(topic))}$")
    found = []
    for record in await read_to_end(settings, parts):
        event = parse_event(record.value or b"")
        assert isinstance(event, PersonalDataAccessed)
        headers = {k: v.decode() for k, v in record.headers}
        found.append((event, headers, record.value or b""))
    return found


async def published(settings: Settings, topic: str, count: int) -> list[Read]:
    async def enough() -> list[Read] | None:
        found = await reads_on(settings, topic)
        return found if len(found) >= count else None

    return await wait_for(enough, 30, f"{count} reads on {topic}")


def assert_signed_by(
    settings: Settings, service: str, headers: dict[str, str], value: bytes
) -> None:
    keys = PublicKeys.load(settings.registry_path())
    assert headers[SIGNER_HEADER] == service
    assert keys.verify(service, value, headers[SIGNATURE_HEADER])


async def test_reading_a_case_records_one_signed_read_and_a_refusal_none(
    settings: Settings,
) -> None:
    async with stack(settings) as s:
        path = f"/cases/{s.case_id}"
        refused = {}
        for actor in ("anonymous", "clerk-c02-w01", "officer-ss"):
            async with http(s.intake, s.tokens.get(actor, {}) | REASON) as client:
                refused[actor] = (await client.get(path)).status_code
        async with http(s.intake, s.tokens["auditor-1"]) as client:
            unexplained = await client.get(path)  # an auditor must say why
            leaky = await client.get(
                path, headers={"Onedoor-Access-Reason": s.applicant["id_number"]}
            )
        for answer in (unexplained, leaky):
            assert answer.status_code == 422, answer.text
            assert answer.json()["detail"][0]["loc"] == ["header", "onedoor-access-reason"]
            assert s.applicant["id_number"] not in answer.text
        async with http(s.intake, s.tokens["clerk-c01-w01"]) as client:
            by_clerk = await client.get(path, headers={"X-Request-ID": "req-clerk-1"})
        async with http(s.intake, s.tokens["auditor-1"] | REASON) as client:
            by_auditor = await client.get(path)
        await published(settings, ACCESS_INTAKE, 2)
        relay = s.live_intake.service.relay

        async def drained() -> bool:
            return await relay.backlog() == 0

        await wait_for(drained, 10, "intake's outbox published")
        reads = await reads_on(settings, ACCESS_INTAKE)
    assert refused == {"anonymous": 401, "clerk-c02-w01": 403, "officer-ss": 403}
    assert by_clerk.status_code == by_auditor.status_code == 200
    # Exactly the two reads that showed data, in order, each signed by intake.
    assert [(e.accessor, e.role, e.reason) for e, _, _ in reads] == [
        ("clerk-c01-w01", "clerk", None),
        ("auditor-1", "auditor", WHY),
    ]
    for event, headers, value in reads:
        assert_signed_by(settings, "intake", headers, value)
        assert event.case_id == UUID(s.case_id)
        assert event.producer == "intake"
        assert event.channel == "http"
        assert event.resource == "GET /cases/{case_id}"
        assert set(event.fields) == set(by_clerk.json())  # the names of what was shown
        assert s.applicant["id_number"].encode() not in value
        assert s.applicant["name"].encode() not in value
    assert reads[0][0].request_id == "req-clerk-1"
    assert reads[0][0].accessor_centre == "C01"


async def test_a_read_that_cannot_be_recorded_shows_nothing(settings: Settings) -> None:
    async with stack(settings) as s:
        owner = await connect(settings.dsn(), "intake", name="test")
        # The database refuses every read's record from now on (a full disk, say).
        await owner.execute(
            "ALTER TABLE outbox ADD CONSTRAINT no_reads CHECK (topic <> 'access.intake')"
        )
        try:
            async with http(s.intake, s.tokens["clerk-c01-w01"]) as client:
                answer = await client.get(f"/cases/{s.case_id}")
        finally:
            await owner.execute("ALTER TABLE outbox DROP CONSTRAINT no_reads")
            await owner.close()
        assert await reads_on(settings, ACCESS_INTAKE) == []
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert "receipt_no" not in answer.text
    assert "nothing is shown" in answer.json()["detail"]


async def test_the_audit_records_history_reads_and_answers_who_read_what(
    settings: Settings,
) -> None:
    async with stack(settings) as s:
        history = f"/cases/{s.case_id}/history"
        async with http(s.audit, s.tokens["admin-1"]) as client:
            before = (await client.get("/stats")).json()["accesses_by_role"]
        async with http(s.audit) as client:
            anonymous = await client.get("/cases/not-a-case/history")  # refused first
        async with http(s.audit, s.tokens["auditor-1"]) as client:
            unexplained = await client.get(history)
        async with http(s.audit, s.tokens["auditor-1"] | REASON) as client:
            view = await client.get(history)
        assert view.status_code == 200, view.text
        async with http(s.intake, s.tokens["clerk-c01-w01"]) as client:
            assert (await client.get(f"/cases/{s.case_id}")).status_code == 200
        ((read, headers, value),) = await published(settings, ACCESS_AUDIT, 1)

        async def listed() -> dict[str, Any] | None:
            async with http(s.audit, s.tokens["admin-1"]) as client:
                body: dict[str, Any] = (await client.get(f"/access/cases/{s.case_id}")).json()
            return body if len(body["reads"]) == 2 else None

        by_case = await wait_for(listed, 30, "both reads listed by the audit")
        async with http(s.audit, s.tokens["admin-1"]) as client:
            by_account = (await client.get("/access/accounts/auditor-1")).json()
            stats = (await client.get("/stats")).json()
            refused = await client.get("/access/accounts/auditor-1", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert unexplained.status_code == 422
    assert unexplained.json()["detail"][0]["loc"] == ["header", "onedoor-access-reason"]
    assert view.status_code == 200
    assert_signed_by(settings, "audit", headers, value)
    assert (read.accessor, read.role, read.reason, read.channel) == (
        "auditor-1",
        "auditor",
        WHY,
        "http",
    )
    assert set(read.fields) == set(view.json())
    who = [(r["accessor"], r["role"], r["service"], r["reason"]) for r in by_case["reads"]]
    assert sorted(who, key=str) == sorted(
        [("auditor-1", "auditor", "audit", WHY), ("clerk-c01-w01", "clerk", "intake", None)],
        key=str,
    )
    # (The module's earlier tests read other cases into the same audit store.)
    assert {r["accessor"] for r in by_account["reads"]} == {"auditor-1"}
    assert [r["case_id"] for r in by_account["reads"]].count(s.case_id) == 1
    after = stats["accesses_by_role"]
    assert after["auditor"] == before.get("auditor", 0) + 1
    assert after["clerk"] == before.get("clerk", 0) + 1
    assert refused.status_code == 401
    # The list of reads shows who read, never the person read about.
    assert s.applicant["id_number"] not in json.dumps(by_case)


def audit_cli(
    settings: Settings, *args: str, token_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        # As the test's own Kafka principal (the services here run in-process as it too).
        **kafka_security.env_of(settings),
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "ONEDOOR_TOPIC_PREFIX": settings.topic_prefix,
        "ONEDOOR_KEYS_DIR": str(settings.keys_dir),
        "ONEDOOR_LOG_JSON": "true",
    }
    if token_file is not None:
        env["ONEDOOR_TOKEN_FILE"] = str(token_file)
    return subprocess.run(
        [sys.executable, "-m", "services.audit.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_cli_shows_a_case_only_to_someone_who_says_who_and_why(
    settings: Settings, tmp_path: Path
) -> None:
    async with stack(settings) as s:
        tokens = {}
        for name in ("clerk-c01-w01", "auditor-1"):
            tokens[name] = tmp_path / f"{name}.token"
            tokens[name].write_text(s.tokens[name]["Authorization"].removeprefix("Bearer "))
            tokens[name].chmod(0o600)
        anonymous = audit_cli(settings, "history", s.case_id)
        shared = tmp_path / "shared.token"
        shared.write_text(tokens["auditor-1"].read_text())
        shared.chmod(0o644)
        readable = audit_cli(settings, "history", s.case_id, "--reason", WHY, token_file=shared)
        clerk = audit_cli(
            settings, "history", s.case_id, "--reason", WHY, token_file=tokens["clerk-c01-w01"]
        )
        unexplained = audit_cli(settings, "history", s.case_id, token_file=tokens["auditor-1"])
        assert await reads_on(settings, ACCESS_AUDIT) == []  # no refusal recorded a read
        shown = audit_cli(
            settings, "history", s.case_id, "--json", "--reason", WHY,
            token_file=tokens["auditor-1"],
        )  # fmt: skip
        ((read, headers, value),) = await reads_on(settings, ACCESS_AUDIT)  # acked before printing
        await wait_for(lambda: audit_has_read(settings, read), 30, "the audit stored the read")
        by_case = audit_cli(settings, "access", "--case", s.case_id, "--json")
        by_account = audit_cli(settings, "access", "--account", "auditor-1", "--json")
        table = audit_cli(settings, "access", "--case", s.case_id)
        nobody = audit_cli(settings, "access", "--account", "nobody", "--json")
    assert anonymous.returncode == 2
    assert "ONEDOOR_TOKEN_FILE" in anonymous.stderr
    assert "POST /auth/token" in anonymous.stderr  # the fix
    assert anonymous.stdout == ""
    assert readable.returncode == 2
    assert "chmod 600" in readable.stderr
    assert readable.stdout == ""
    assert clerk.returncode == 2
    assert "clerk may not" in clerk.stderr
    assert clerk.stdout == ""
    assert unexplained.returncode == 2
    assert "--reason" in unexplained.stderr
    assert unexplained.stdout == ""
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["case_id"] == s.case_id
    assert_signed_by(settings, "audit", headers, value)
    assert (read.accessor, read.role, read.channel, read.resource, read.reason) == (
        "auditor-1",
        "auditor",
        "cli",
        "onedoor-audit history",
        WHY,
    )
    assert by_case.returncode == 0, by_case.stderr
    assert [(r["accessor"], r["channel"]) for r in json.loads(by_case.stdout)] == [
        ("auditor-1", "cli")
    ]
    assert by_account.returncode == 0, by_account.stderr
    mine = [r for r in json.loads(by_account.stdout) if r["case_id"] == s.case_id]
    assert [(r["accessor"], r["role"], r["reason"]) for r in mine] == [
        ("auditor-1", "auditor", WHY)
    ]
    assert table.returncode == 0, table.stderr
    assert "reads of case" in table.stdout
    assert "auditor-1" in table.stdout
    assert json.loads(nobody.stdout) == []


async def audit_has_read(settings: Settings, read: PersonalDataAccessed) -> bool:
    conn = await connect(settings.dsn(), "audit", name="test")
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM access_reads WHERE event_id = $1", read.event_id
            )
        )
    finally:
        await conn.close()


async def test_a_forged_read_is_flagged_by_verify(settings: Settings) -> None:
    async with stack(settings) as s:
        async with http(s.intake, s.tokens["auditor-1"] | REASON) as client:
            assert (await client.get(f"/cases/{s.case_id}")).status_code == 200
        await published(settings, ACCESS_INTAKE, 1)
    case_id = UUID(s.case_id)
    auditor = Accessor("auditor-1", "auditor")
    # A read put on intake's access topic by the router's key, one by the audit's key on
    # intake's topic, and one nobody signed: none of them is intake's record.
    forged = {
        "router": access_event("router", auditor, case_id, fields=("status",), reason="x" * 8,
                               channel="http", resource="GET /cases/{case_id}"),
        "audit": access_event("audit", auditor, case_id, fields=("status",), reason="x" * 8,
                              channel="cli", resource="onedoor-audit history"),
        None: access_event("intake", auditor, case_id, fields=("status",), reason="x" * 8,
                           channel="http", resource="GET /cases/{case_id}"),
    }  # fmt: skip
    producer = make_producer(settings)
    await producer.start()
    try:
        for signer, event in forged.items():
            value = event.to_json()
            headers = (
                []
                if signer is None
                else [
                    (k, v.encode())
                    for k, v in Signer.load(settings.keys_dir, signer).headers(value)
                ]
            )
            await producer.send_and_wait(
                settings.topic(ACCESS_INTAKE), value, key=str(case_id).encode(), headers=headers
            )
    finally:
        await producer.stop()
    report = await verify_log(settings, processes=1)
    found = {(v.kind, v.event_id) for v in report.violations}
    assert found == {
        ("wrong_signer", forged["router"].event_id),
        ("wrong_signer", forged["audit"].event_id),
        ("missing_signature", forged[None].event_id),
    }, report.violations
