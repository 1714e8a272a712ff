"""Hostile and careless input at intake's front, on the real database and broker: every
undecodable body is a 400, every bad field a 422 naming it, never a 500; and one
request's failure never fails the requests stored with it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from services.intake.acceptor import Acceptor
from shared.platform.settings import Settings
from tests.e2e.harness import case_body, person
from tests.e2e.test_pipeline import BENEFIT_FORM
from tests.integration.test_intake_api import clerk_token, client, intake

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}


def good() -> dict[str, Any]:
    return case_body("SS-UNEMPLOYMENT-BENEFIT", person(), BENEFIT_FORM)


def with_applicant(**fields: str) -> dict[str, Any]:
    body = good()
    return {**body, "applicant": {**body["applicant"], **fields}}


def with_form(**fields: Any) -> dict[str, Any]:
    body = good()
    return {**body, "form": {**body["form"], **fields}}


def nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"d": value}
    return value


UNDECODABLE = {
    "invalid UTF-8": (b'{"item_code": "\xff\xfe"}', "not UTF-8"),
    "1,500 levels of nesting": (b"[" * 1500 + b"]" * 1500, "nests deeper"),
    "a 5,000-digit integer": (b'{"form": {"n": ' + b"7" * 5000 + b"}}", "digits"),
    "a 300-deep form": (json.dumps(with_form(deep=nested(300))).encode(), "nests deeper"),
}


@pytest.mark.parametrize("name", UNDECODABLE)
async def test_an_undecodable_body_is_a_400_saying_why(settings: Settings, name: str) -> None:
    body, why = UNDECODABLE[name]
    async with intake(settings) as front, client(front, await clerk_token(front)) as http:
        response = await http.post("/cases", content=body, headers=JSON)
    assert response.status_code == 400, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body"]
    assert error["type"] == "body_undecodable"
    assert why in error["msg"]


BAD_FIELDS = {
    "NUL in the name": (with_applicant(name="张\x00三"), ["body", "applicant", "name"]),
    "a newline in the name": (with_applicant(name="张三\n李四"), ["body", "applicant", "name"]),
    "a right-to-left override in the name": (
        with_applicant(name="张\u202e三"),
        ["body", "applicant", "name"],
    ),
    "NUL in the ID number": (
        with_applicant(id_number="11010519491231002\x00"),
        ["body", "applicant", "id_number"],
    ),
    "NUL in a form value": (with_form(note="a\x00b"), ["body", "form", "note"]),
    "a form nested 10 deep": (with_form(deep=nested(10)), ["body", "form", "deep"]),
    "a 100,000-character form key": (with_form(**{"k" * 100_000: 1}), ["body", "form"]),
    "full-width digits in community_code": (
        {**good(), "community_code": "".join(chr(0xFF10 + int(d)) for d in "110105001001")},
        ["body", "community_code"],
    ),
}


@pytest.mark.parametrize("name", BAD_FIELDS)
async def test_a_bad_field_is_a_422_naming_it(settings: Settings, name: str) -> None:
    body, loc = BAD_FIELDS[name]
    async with intake(settings) as front, client(front, await clerk_token(front)) as http:
        response = await http.post("/cases", content=json.dumps(body).encode(), headers=JSON)
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]]


async def test_tabs_and_line_breaks_in_free_text_are_accepted(settings: Settings) -> None:
    body = with_form(note="第一行\n第二行\t完")
    async with intake(settings) as front, client(front, await clerk_token(front)) as http:
        response = await http.post("/cases", content=json.dumps(body).encode(), headers=JSON)
    assert response.status_code == 201, response.text


async def test_one_failing_request_fails_no_other_request_of_its_group_commit(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A request that passes every check but fails where it is stored (a value the
    # database or the outbox refuses) is stored in the same transaction as the requests
    # that arrived with it. Before, all of them got its error.
    store = Acceptor._store

    async def store_unless_poisoned(self: Acceptor, conn: Any, fresh: list[Any], now: Any) -> None:
        if any("poison" in new.pending.request.form for new in fresh):
            raise ValueError("the outbox refused this request's event")
        await store(self, conn, fresh, now)

    monkeypatch.setattr(Acceptor, "_store", store_unless_poisoned)
    async with intake(settings) as front, client(front, await clerk_token(front)) as http:
        bodies = [good() for _ in range(40)]
        bodies.insert(17, with_form(poison="yes"))
        answers = await asyncio.gather(
            *(http.post("/cases", content=json.dumps(b).encode(), headers=JSON) for b in bodies),
            return_exceptions=True,
        )
    failed = [a for a in answers if isinstance(a, BaseException) or a.status_code != 201]
    assert len(failed) == 1, failed  # the poisoned request alone
    accepted = [a for a in answers if not isinstance(a, BaseException) and a.status_code == 201]
    assert len({a.json()["case_id"] for a in accepted}) == 40
