"""The auditor's view of a clean run: all five services as processes, realistic cases over
HTTP, then onedoor-audit (the installed CLI) and the audit's read-only HTTP API."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.demo import build_requests
from services.catalogue import default_catalogue
from tests.conftest import Stack
from tests.e2e.harness import Pipeline, free_port, run_services, wait_closed
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

SERVICES = ["intake", "router", "hr_registration", "social_security", "audit"]
CASES = 60


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
        service_env={"audit": {"ONEDOOR_HTTP_PORT": str(audit_port)}},
    ) as pipeline:
        yield pipeline


@pytest.fixture(scope="module")
async def closed_cases(pipeline: Pipeline, audit_port: int) -> list[str]:
    """Submit a realistic mix, wait until every case is closed and the audit has it all."""
    requests = [(b, k) for b, k in build_requests(default_catalogue(), CASES, seed=11)]
    ids: list[str] = []
    async with httpx.AsyncClient(
        base_url=pipeline.base, timeout=30, headers=pipeline.auth
    ) as client:
        for body, key in requests:
            resp = await client.post(
                "/cases", json=body, headers={"Idempotency-Key": key} if key else {}
            )
            if resp.status_code in (200, 201):
                ids.append(resp.json()["case_id"])
        for case_id in ids:
            await wait_closed(client, case_id)
    unseen = list(ids)  # not seen closed by the audit yet

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

        await wait_for(audit_has_every_close, 60, "the audit has every case closed", interval=0.2)
    return ids


def audit_cli(
    pipeline: Pipeline, *args: str, role: str = "auditor", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """onedoor-audit, connected as the auditor's read-only role (or ``role``'s)."""
    return subprocess.run(
        [sys.executable, "-m", "services.audit.cli", *args],
        env=pipeline.env_of(role) | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_verify_finds_zero_violations_in_a_clean_run(
    pipeline: Pipeline, closed_cases: list[str]
) -> None:
    result = audit_cli(pipeline, "verify", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["violations"] == 0, report["details"]
    assert report["cases"] >= len(closed_cases)
    assert report["records"] >= 3 * len(closed_cases)
    # The audit service checked each signature at ingest: verify reuses those verdicts
    # for byte-identical records and checks only what the audit has not stored yet.
    assert report["signatures_reused"] > 0
    assert report["signatures_checked"] + report["signatures_reused"] == report["records"]


def test_rechecking_every_signature_agrees(pipeline: Pipeline, closed_cases: list[str]) -> None:
    result = audit_cli(pipeline, "verify", "--json", "--recheck-signatures")
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["violations"] == 0, report["details"]
    assert report["signatures_reused"] == 0
    assert report["signatures_checked"] == report["records"]


def test_rebuild_gives_the_live_digest(pipeline: Pipeline, closed_cases: list[str]) -> None:
    # The auditor may not rewrite the projection; the audit service's role may.
    refused = audit_cli(pipeline, "rebuild")
    assert refused.returncode == 2
    assert "run it as the audit service's role" in " ".join(refused.stderr.split())
    for _ in range(2):
        result = audit_cli(pipeline, "rebuild", role="audit")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "identical" in result.stdout


def test_history_and_stats_from_the_cli(
    pipeline: Pipeline, closed_cases: list[str], tmp_path: Path
) -> None:
    token = tmp_path / "auditor.token"
    token.write_text(pipeline.auditor["Authorization"].removeprefix("Bearer "))
    token.chmod(0o600)
    refused = audit_cli(pipeline, "history", closed_cases[0], "--json")
    assert refused.returncode == 2
    assert "ONEDOOR_TOKEN_FILE" in refused.stderr
    assert refused.stdout == ""
    history = audit_cli(
        pipeline,
        "history",
        closed_cases[0],
        "--json",
        "--reason",
        "end-to-end test",
        env={"ONEDOOR_TOKEN_FILE": str(token)},
    )
    assert history.returncode == 0, history.stderr
    view = json.loads(history.stdout)
    assert view["case_id"] == closed_cases[0]
    assert view["timeline"][0]["event_type"] == "CaseAccepted"
    assert "id_number" not in history.stdout
    assert "phone" not in history.stdout
    stats = json.loads(audit_cli(pipeline, "stats", "--json").stdout)
    assert sum(c["accepted"] for c in stats["per_item"].values()) == len(closed_cases)
    table = audit_cli(pipeline, "stats", "--csv")
    assert table.stdout.splitlines()[0] == "dimension,key,measure,value"


async def test_history_and_stats_over_http(
    pipeline: Pipeline, audit_port: int, closed_cases: list[str]
) -> None:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{audit_port}", headers=pipeline.auditor
    ) as audit:
        view = (await audit.get(f"/cases/{closed_cases[-1]}/history")).json()
        stats = (await audit.get("/stats")).json()

        async def every_read_counted() -> dict[str, Any] | None:
            # The auditor's reads: one per case seen closed while waiting, and the last.
            body: dict[str, Any] = (await audit.get("/stats")).json()
            counted = body["accesses_by_role"].get("auditor", 0) > len(closed_cases)
            return body if counted else None

        await wait_for(every_read_counted, 30, "the auditor's reads counted")
        reads = (await audit.get(f"/access/cases/{closed_cases[-1]}")).json()["reads"]
        missing = await audit.get("/cases/00000000-0000-0000-0000-000000000000/history")
    assert view["outcome"] in {"approved", "rejected"}
    assert stats["accept_to_close_ms"]["count"] == len(closed_cases)
    assert missing.status_code == 404
    # The clerk polled intake until the case closed; the auditor read its history.
    assert {(r["accessor"], r["role"], r["reason"], r["service"]) for r in reads} == {
        ("clerk-c01-w01", "clerk", None, "intake"),
        ("auditor-1", "auditor", "end-to-end test", "audit"),
    }
