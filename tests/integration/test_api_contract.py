"""Intake, running on the real broker and database, answers as docs/openapi.json says:
every answer of the lean POST /cases front is one the document states, with its shape,
the document it serves is the committed one, and its API pages work offline."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from deploy.contracts import OPENAPI_PATH
from shared.platform.limits import Limits
from shared.platform.settings import Settings
from tests.integration.test_intake_api import _variants, clerk_token, client, intake
from tests.support.pages import check_offline_pages
from tests.support.staff import AUDITOR, bearer, make_staff, sign_in

pytestmark = pytest.mark.integration


def _problems(doc: dict[str, Any], status: int, answer: Any) -> list[str]:
    declared = doc["paths"]["/cases"]["post"]["responses"].get(str(status))
    if declared is None:
        return [f"{status} is not in the document"]
    schema = declared["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": doc["components"]})
    return [f"{status}: {e.message}" for e in validator.iter_errors(answer)]


async def test_every_answer_of_the_front_is_documented(settings: Settings) -> None:
    doc = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    responses = doc["paths"]["/cases"]["post"]["responses"]
    settings = settings.model_copy(update={"api_docs": True})
    async with intake(settings) as front:
        auth = await clerk_token(front)
        await make_staff(settings.dsn(), AUDITOR)
        async with client(front) as http:
            auditor = bearer((await sign_in(http, AUDITOR))["access_token"])
            variants = _variants(auth)
            good_body = variants[0][1]
            json_type = {"content-type": "application/json"}
            variants += [
                ("not a clerk", good_body, {**json_type, **auditor}),
                ("too large", b"x" * (Limits.of(settings).body + 1), {**json_type, **auth}),
            ]
            seen: dict[int, str] = {}
            problems: list[str] = []
            for name, body, headers in variants:
                answer = await http.post("/cases", content=body, headers=headers)
                found = _problems(doc, answer.status_code, answer.json())
                problems += [f"{name}: {p}" for p in found]
                for header in responses.get(str(answer.status_code), {}).get("headers", {}):
                    if header not in answer.headers:
                        problems.append(f"{name}: no {header} header")
                seen.setdefault(answer.status_code, name)
            served = (await http.get("/openapi.json")).json()
            await check_offline_pages(http)
    assert problems == []
    assert set(seen) == {200, 201, 401, 403, 413, 422}
    assert served == doc, "intake serves another document than docs/openapi.json"
