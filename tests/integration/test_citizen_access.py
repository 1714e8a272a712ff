"""A citizen reads their own case with receipt number + last four ID characters + a
one-time code from the file notifier, on the real PostgreSQL and broker: the full flow,
the neutral answer, the lock after wrong codes, single use, one case only, no staff
endpoint, no ID number or phone unmasked in any answer or log line; an SMS gateway that
fails answers 503 and does not hold back the retry."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.intake.api import CasesFront
from services.intake.main import build
from shared.contracts.identity import mask_phone
from shared.contracts.topology import ACCESS_INTAKE
from shared.platform.db import connect
from shared.platform.runtime import running
from shared.platform.settings import Settings
from tests.e2e.test_pipeline import BENEFIT_FORM
from tests.integration.test_access_log import Read, assert_signed_by, reads_on
from tests.support.builders import case_body, person
from tests.support.staff import CLERK, bearer, make_staff, sign_in
from tests.support.waiting import wait_for
from tests.unit.test_notifier import Gateway, gateway

pytestmark = pytest.mark.integration

MAX_WRONG = 3


@dataclass
class Desk:
    front: CasesFront
    outbox: Path  # the file notifier's lines

    def client(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.front), base_url="http://intake", headers=headers
        )

    def messages(self) -> list[dict[str, Any]]:
        if not self.outbox.exists():
            return []
        return [json.loads(line) for line in self.outbox.read_text().splitlines()]

    async def code_for(self, phone: str, already: int) -> str:
        """The code in the file notifier's next message to ``phone``."""
        sent = await wait_for(
            lambda: [m for m in self.messages() if m["to"] == phone][already:],
            10,
            f"message {already + 1} to the citizen's phone",
        )
        found = re.search(r"验证码为 (\d{6})", sent[0]["text"])
        assert found is not None, sent[0]
        return found.group(1)

    async def file(self, applicant: dict[str, str]) -> dict[str, Any]:
        """A case filed by the clerk for ``applicant``: its id and receipt number."""
        async with self.client() as http:
            token = (await sign_in(http, CLERK))["access_token"]
            made = await http.post(
                "/cases",
                json=case_body("SS-UNEMPLOYMENT-BENEFIT", applicant, BENEFIT_FORM),
                headers=bearer(token),
            )
        assert made.status_code == 201, made.text
        answer: dict[str, Any] = made.json()
        return answer


@contextlib.asynccontextmanager
async def desk(settings: Settings, tmp_path: Path) -> AsyncIterator[Desk]:
    outbox = tmp_path / "sms.jsonl"
    settings = settings.model_copy(
        update={
            "notifier": "file",
            "notifier_file": outbox,
            "citizen_max_wrong_codes": MAX_WRONG,
            "citizen_code_answer_s": 0.2,
        }
    )
    async with running(await build(settings)) as live:
        front = live.http_app()
        assert isinstance(front, CasesFront)
        await make_staff(settings.dsn(), CLERK)
        yield Desk(front, outbox)


async def every_read_published(settings: Settings) -> list[Read]:
    """The reads on access.intake, once intake's outbox holds none unpublished."""

    async def published() -> bool:
        conn = await connect(settings.dsn(), "intake", name="test")
        try:
            left = await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = 'access.intake'")
        finally:
            await conn.close()
        return bool(left == 0)

    await wait_for(published, 10, "intake's reads published")
    return await reads_on(settings, ACCESS_INTAKE)


def last4(applicant: dict[str, str]) -> str:
    return applicant["id_number"][-4:]


async def session(http: httpx.AsyncClient, receipt: str, digits: str, code: str) -> httpx.Response:
    return await http.post(
        "/citizen/session", json={"receipt_no": receipt, "id_last4": digits, "code": code}
    )


async def test_a_citizen_reads_their_own_case_with_a_one_time_code(
    settings: Settings, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    applicant, other = person(), person()
    async with desk(settings, tmp_path) as d:
        case = await d.file(applicant)
        second = await d.file(other)
        receipt = case["receipt_no"]
        async with d.client() as http:
            asked = await http.post(
                "/citizen/code", json={"receipt_no": receipt, "id_last4": last4(applicant)}
            )
            assert asked.status_code == 202, asked.text
            code = await d.code_for(applicant["phone"], 0)
            message = d.messages()[0]
            assert message["to_masked"] == mask_phone(applicant["phone"])
            assert message["text"].startswith("【一门受理】您的查询验证码为 ")
            opened = await session(http, receipt, last4(applicant), code)
            assert opened.status_code == 200, opened.text
            assert opened.json()["role"] == "citizen"
            token = opened.json()["access_token"]
            # A code is spent by its first use.
            again = await session(http, receipt, last4(applicant), code)
            assert again.status_code == 401, again.text
        async with d.client(bearer(token)) as http:
            own = await http.get("/citizen/case")
            assert own.status_code == 200, own.text
            view = own.json()
            assert view["receipt_no"] == receipt
            assert view["status_label"].split(" / ")[0] in ("已受理", "办理中", "已办结")
            assert view["applicant"]["phone"] == mask_phone(applicant["phone"])
            assert view["applicant"]["id_number"].endswith(last4(applicant))
            assert "*" in view["applicant"]["id_number"]
            answers = [own.text]
            # Staff endpoints refuse a citizen token; another case is not reachable.
            staff_calls = {
                "GET /cases/{own}": await http.get(f"/cases/{case['case_id']}"),
                "GET /cases/{other}": await http.get(f"/cases/{second['case_id']}"),
                "POST /cases (front)": await http.post(
                    "/cases", json=case_body("SS-UNEMPLOYMENT-BENEFIT", other, BENEFIT_FORM)
                ),
            }
            assert {k: r.status_code for k, r in staff_calls.items()} == dict.fromkeys(
                staff_calls, 403
            )
            answers += [r.text for r in staff_calls.values()]
        async with d.client() as http:
            anonymous = await http.get("/citizen/case")
            assert anonymous.status_code == 401
            clerk = (await sign_in(http, CLERK))["access_token"]
            by_clerk = await http.get("/citizen/case", headers=bearer(clerk))
            assert by_clerk.status_code == 403, by_clerk.text
            answers += [anonymous.text, by_clerk.text, asked.text, opened.text]
        # The one read that showed data is on the log as the citizen's, signed by intake;
        # the refused ones recorded nothing.
        reads = await every_read_published(settings)
    assert [(e.accessor, e.role, e.reason, e.resource) for e, _, _ in reads] == [
        (f"citizen:{receipt}", "citizen", None, "GET /citizen/case")
    ]
    ((read, headers, value),) = reads
    assert_signed_by(settings, "intake", headers, value)
    assert {"applicant.id_number", "applicant.phone", "status"} <= set(read.fields)
    assert applicant["id_number"].encode() not in value
    for text in answers:
        for secret in (applicant["id_number"], applicant["phone"], other["id_number"]):
            assert secret not in text
    logged = capfd.readouterr()
    assert "citizen signed in" in logged.err  # the log was captured: the check below holds
    for secret in (applicant["id_number"], applicant["phone"], code):
        assert secret not in logged.out + logged.err


async def test_a_wrong_last4_gets_the_same_answer_and_sends_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    applicant = person()
    async with desk(settings, tmp_path) as d:
        case = await d.file(applicant)
        wrong = "0000" if last4(applicant) != "0000" else "1111"
        async with d.client() as http:
            answers = {}
            for label, body in {
                "right": {"receipt_no": case["receipt_no"], "id_last4": last4(applicant)},
                "wrong last4": {"receipt_no": case["receipt_no"], "id_last4": wrong},
                "unknown receipt": {"receipt_no": "C01-20000101-999999", "id_last4": "1234"},
            }.items():
                started = time.monotonic()
                answer = await http.post("/citizen/code", json=body)
                answers[label] = (answer.status_code, answer.json(), time.monotonic() - started)
            await d.code_for(applicant["phone"], 0)
            bad_shape = await http.post(
                "/citizen/code", json={"receipt_no": "../etc", "id_last4": "12"}
            )
    statuses = {label: (status, body) for label, (status, body, _) in answers.items()}
    assert len({json.dumps(v, ensure_ascii=False) for v in statuses.values()}) == 1, statuses
    assert statuses["right"][0] == 202
    assert all(took >= 0.2 for _, _, took in answers.values())  # the least answer time
    assert len(d.messages()) == 1  # only the matching request sent a code
    assert bad_shape.status_code == 422
    fields = {tuple(e["loc"]) for e in bad_shape.json()["detail"]}
    assert fields == {("body", "receipt_no"), ("body", "id_last4")}


async def test_wrong_codes_lock_the_receipt_known_or_not(
    settings: Settings, tmp_path: Path
) -> None:
    applicant = person()
    async with desk(settings, tmp_path) as d:
        case = await d.file(applicant)
        receipt, digits = case["receipt_no"], last4(applicant)
        async with d.client() as http:
            await http.post("/citizen/code", json={"receipt_no": receipt, "id_last4": digits})
            code = await d.code_for(applicant["phone"], 0)
            wrong = f"{(int(code) + 1) % 1_000_000:06d}"
            tries = [(await session(http, receipt, digits, wrong)).status_code for _ in range(3)]
            assert tries == [401] * MAX_WRONG
            # Locked now: even the right code is refused, and it was voided.
            locked = await session(http, receipt, digits, code)
            assert locked.status_code == 429, locked.text
            assert int(locked.headers["retry-after"]) > 0
            # A new code is not sent while the receipt is locked (the answer is the same).
            asked = await http.post(
                "/citizen/code", json={"receipt_no": receipt, "id_last4": digits}
            )
            assert asked.status_code == 202
            # A receipt that does not exist locks the same way: no oracle.
            ghost = "C01-20000101-000777"
            ghost_tries = [
                (await session(http, ghost, "1234", "123456")).status_code
                for _ in range(MAX_WRONG + 1)
            ]
            assert ghost_tries == [401] * MAX_WRONG + [429]
    assert len(d.messages()) == 1


async def test_a_resend_is_throttled_and_a_new_code_replaces_the_old(
    settings: Settings, tmp_path: Path
) -> None:
    applicant = person()
    async with desk(settings, tmp_path) as d:
        case = await d.file(applicant)
        body = {"receipt_no": case["receipt_no"], "id_last4": last4(applicant)}
        async with d.client() as http:
            first = await http.post("/citizen/code", json=body)
            second = await http.post("/citizen/code", json=body)
            assert (first.status_code, second.status_code) == (202, 202)
            code = await d.code_for(applicant["phone"], 0)
            assert len(d.messages()) == 1  # the second request within citizen_resend_s sent none
            opened = await session(http, case["receipt_no"], last4(applicant), code)
            assert opened.status_code == 200, opened.text


async def test_a_failing_sms_gateway_answers_503_and_a_retry_sends_at_once(
    settings: Settings, tmp_path: Path
) -> None:
    applicant = person()
    with gateway() as url:
        Gateway.status = 502
        settings = settings.model_copy(
            update={"notifier": "sms_gateway", "sms_gateway_url": url, "citizen_code_answer_s": 0}
        )
        async with running(await build(settings)) as live:
            front = live.http_app()
            assert isinstance(front, CasesFront)
            await make_staff(settings.dsn(), CLERK)
            d = Desk(front, tmp_path / "unused.jsonl")
            case = await d.file(applicant)
            body = {"receipt_no": case["receipt_no"], "id_last4": last4(applicant)}
            async with d.client() as http:
                failed = await http.post("/citizen/code", json=body)
                Gateway.status = 200
                retried = await http.post("/citizen/code", json=body)
    assert failed.status_code == 503, failed.text
    assert "验证码暂时无法发送" in failed.json()["detail"]
    assert "502" in failed.json()["detail"]
    assert applicant["phone"] not in failed.text
    # The code that was not delivered does not hold back the retry (no resend wait).
    assert retried.status_code == 202, retried.text
    assert [m["to"] for m in Gateway.received] == [applicant["phone"]] * 2
    assert re.search(r"验证码为 \d{6}", Gateway.received[1]["text"])
