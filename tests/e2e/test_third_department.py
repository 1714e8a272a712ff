"""Adding a department takes one package: its catalogue entries and its rules, nothing else.

The test writes a throw-away "parks" department package into a temporary folder (as a
district would drop a new package beside services/hr_registration), points the router
and intake at that folder, runs it with the generic adapter runner, and submits its item
over HTTP like any other.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Stack
from tests.e2e.harness import Pipeline, run_services, wait_closed
from tests.support.builders import case_body, person

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

CATALOGUE = """\
department: parks
version: "2026.11.1"
actions: [tree_felling_permit]
items:
  - code: PK-TREE-FELLING-PERMIT
    name: Permit to fell trees on a private plot
    applicant_kind: natural
    level: community
    steps:
      - {department: parks, action: tree_felling_permit, name: Inspect and permit}
    settle_on_spot: false
    promised_days: 3
    required_fields:
      - {name: tree_count, type: int, label: Number of trees, min: 1, max: 100}
"""

RULES = """\
from shared.department.adapter import Department, StepContext
from shared.department.decisions import Approve, Decision, Reject
from shared.contracts.events import StepAssigned

department = Department("parks")


@department.action("tree_felling_permit")
async def permit(ctx: StepContext, task: StepAssigned) -> Decision:
    if task.form["tree_count"] > 5:
        return Reject("too_many_trees", "More than 5 trees needs the district's approval.")
    return Approve(reference=f"PK-{task.case_id.hex[:8].upper()}")
"""


@pytest.fixture(scope="module")
def parks_pipeline(
    stack: Stack, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    root = tmp_path_factory.mktemp("departments")
    package = root / "parks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "catalogue.yaml").write_text(CATALOGUE)
    (package / "department.py").write_text(textwrap.dedent(RULES))
    services = {name: ["-m", f"services.{name}"] for name in ("intake", "router")}
    services["parks"] = ["-m", "shared.department", "parks"]
    with run_services(
        services,
        kafka=stack.kafka,
        database_url=database_url,
        logs=tmp_path_factory.mktemp("logs"),
        extra_env={
            "ONEDOOR_CATALOGUE_DIRS": json.dumps([str(root)]),
            "PYTHONPATH": str(root),  # the new package, importable like any other
        },
    ) as pipeline:
        yield pipeline


@pytest.fixture
async def client(parks_pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=parks_pipeline.base, timeout=30, headers=parks_pipeline.auth
    ) as c:
        yield c


@pytest.mark.parametrize(
    ("trees", "outcome", "reason"),
    [(3, "approved", None), (9, "rejected", "too_many_trees")],
)
async def test_a_new_department_package_takes_its_cases(
    client: httpx.AsyncClient, trees: int, outcome: str, reason: str | None
) -> None:
    resp = await client.post(
        "/cases", json=case_body("PK-TREE-FELLING-PERMIT", person(), {"tree_count": trees})
    )
    assert resp.status_code == 201, resp.text
    closed = await wait_closed(client, resp.json()["case_id"])
    assert (closed["outcome"], closed["reason_code"], closed["department"]) == (
        outcome,
        reason,
        "parks",
    )


async def test_the_new_items_form_is_checked_at_the_window(client: httpx.AsyncClient) -> None:
    resp = await client.post("/cases", json=case_body("PK-TREE-FELLING-PERMIT", person(), {}))
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "form", "tree_count"]


def test_the_package_is_only_its_own_files(parks_pipeline: Pipeline, tmp_path: Path) -> None:
    # Nothing under services/ or shared/ names the department: it came in as data + rules.
    repo = Path(__file__).resolve().parents[2]
    mentions = [
        p
        for folder in ("services", "shared", "deploy")
        for p in (repo / folder).rglob("*")
        if p.is_file() and p.suffix in {".py", ".yaml", ".sql"} and "parks" in p.read_text()
    ]
    assert mentions == []
