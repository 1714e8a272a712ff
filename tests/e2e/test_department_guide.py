"""The department guide's example, built from the guide's own code blocks and run on the
real stack: intake and the router load its items, the generic runner runs its adapter,
and cases filed over HTTP end as the guide says (docs/department-guide.md)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import date
from typing import Any

import httpx
import pytest

from shared.contracts.identity import make_resident_id
from tests.conftest import Stack
from tests.e2e.harness import Pipeline, case_body, run_services, wait_closed
from tests.support.guide import write_guide_package
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

ITEM = "CA-SENIOR-ALLOWANCE"
FORM = {"bank_account": "6222020200112233445", "lives_in_district": True}


@pytest.fixture(scope="module")
def guide_pipeline(
    stack: Stack, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    root = tmp_path_factory.mktemp("departments")
    written = write_guide_package(root)
    assert {p.relative_to(root).as_posix() for p in written} >= {
        "civil_affairs/catalogue.yaml",
        "civil_affairs/department.py",
    }
    services = {name: ["-m", f"services.{name}"] for name in ("intake", "router")}
    services["civil_affairs"] = ["-m", "shared.department", "civil_affairs"]  # as the guide
    with run_services(
        services,
        kafka=stack.kafka,
        database_url=database_url,
        logs=tmp_path_factory.mktemp("logs"),
        extra_env={
            "ONEDOOR_CATALOGUE_DIRS": json.dumps([str(root)]),
            "PYTHONPATH": str(root),
        },
    ) as pipeline:
        yield pipeline


@pytest.fixture
async def client(guide_pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=guide_pipeline.base, timeout=30, headers=guide_pipeline.auth
    ) as c:
        yield c


def resident(born: date, seq: int) -> dict[str, str]:
    rid = make_resident_id("110105", born, seq)
    return {"kind": "natural", "name": "Wang Fang", "id_number": rid, "phone": "13800138000"}


async def file(client: httpx.AsyncClient, who: dict[str, str], **form: Any) -> str:
    resp = await client.post("/cases", json=case_body(ITEM, who, FORM | form))
    assert resp.status_code == 201, resp.text
    case_id: str = resp.json()["case_id"]
    return case_id


async def test_a_resident_of_85_is_granted_once(client: httpx.AsyncClient) -> None:
    senior = resident(date(1940, 3, 8), 101)
    first = await wait_closed(client, await file(client, senior))
    assert (first["outcome"], first["department"]) == ("approved", "civil_affairs")
    again = await wait_closed(client, await file(client, senior))
    assert (again["outcome"], again["reason_code"]) == ("rejected", "already_granted")


async def test_a_resident_under_80_is_refused(client: httpx.AsyncClient) -> None:
    closed = await wait_closed(client, await file(client, resident(date(1985, 3, 8), 102)))
    assert (closed["outcome"], closed["reason_code"]) == ("rejected", "under_age")
    assert closed["department"] == "civil_affairs"


async def test_without_residence_the_case_waits_for_information(
    client: httpx.AsyncClient,
) -> None:
    case_id = await file(client, resident(date(1931, 7, 1), 103), lives_in_district=False)

    async def waiting() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(f"/cases/{case_id}")).json()
        return body if body["status"] == "waiting_info" else None

    view = await wait_for(waiting, 60, f"case {case_id} waiting for information")
    assert view["department"] == "civil_affairs"
    assert "lives_in_district" in view["message"]


async def test_the_window_checks_the_new_items_form(client: httpx.AsyncClient) -> None:
    body = case_body(ITEM, resident(date(1940, 3, 8), 104), {"bank_account": "62220202"})
    resp = await client.post("/cases", json=body)
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "form", "lives_in_district"]
