"""The dashboard (``/desk/``) and the window's community page in real headless Chromium,
against the services as real processes (the audit among them) on the real stack.

An auditor signs in and sees the last verify run ("zero violations", with its time) and
every chart drawn by Chart.js (Debian's libjs-chart.js), each chart's data points equal
to the exact counts in the table beside it, and a chart's CSV holding the same figures;
a centre head of another centre sees none of this centre's cases; a clerk opens a
community and sees its cases by item and status. Any console error fails the test.
Screenshots go to ``.data/screenshots/`` (``ONEDOOR_SCREENSHOTS``), from 20 on.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.browser.test_pages import Watch
from tests.conftest import Stack
from tests.e2e.harness import Pipeline, free_port, run_services, wait_closed
from tests.support import builders
from tests.support.builders import person
from tests.support.staff import AUDITOR, CLERK, PASSWORD, make_staff, sign_in_sync
from tests.support.waiting import wait_for_sync

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

SERVICES = ["intake", "router", "hr_registration", "social_security", "audit"]
HOME = "110105001001"  # three two-step benefit cases
OTHER = "110105001002"  # two registrations settled on the spot
CHARTS = ("per_day_department", "on_spot", "close_time", "due", "per_community")


@pytest.fixture(scope="module")
def pipeline(
    stack: Stack, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Pipeline, int]]:
    audit_port = free_port()
    with run_services(
        {name: ["-m", f"services.{name}"] for name in SERVICES},
        kafka=stack.kafka,
        database_url=database_url,
        logs=tmp_path_factory.mktemp("logs"),
        service_env={
            "audit": {"ONEDOOR_HTTP_PORT": str(audit_port), "ONEDOOR_AUDIT_VERIFY_EVERY_S": "5"}
        },
        extra_env={"ONEDOOR_AUDIT_URL": f"http://127.0.0.1:{audit_port}"},
    ) as running:
        asyncio.run(make_staff(database_url, "head-c01", "head-c02"))
        yield running, audit_port


@pytest.fixture(scope="module")
def cases(pipeline: tuple[Pipeline, int]) -> list[str]:
    """Five closed cases, and a verify run that has read them all."""
    running, audit_port = pipeline

    async def file() -> list[str]:
        ids = []
        async with httpx.AsyncClient(
            base_url=running.base, timeout=30, headers=running.auth
        ) as http:
            plan = [("SS-UNEMPLOYMENT-BENEFIT", builders.BENEFIT_FORM, HOME)] * 3 + [
                ("HR-EMPLOYMENT-REGISTRATION", builders.EMPLOYMENT_FORM, OTHER)
            ] * 2
            for item, form, community in plan:
                body = builders.case_body(item, person(), form) | {"community_code": community}
                answer = await http.post("/cases", json=body)
                assert answer.status_code in (200, 201), answer.text
                ids.append(answer.json()["case_id"])
            for case_id in ids:
                await wait_closed(http, case_id)
        return ids

    ids = asyncio.run(file())
    token = sign_in_sync(running.base, AUDITOR)

    def audited() -> bool:
        try:  # the audit (at niceness 19) may still be starting
            body = httpx.get(
                f"http://127.0.0.1:{audit_port}/dashboard",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            ).json()
        except httpx.HTTPError:
            return False
        run = body.get("verification") or {}
        report = run.get("report") or {}
        closed = body["charts"]["on_spot"]["series"][0]["values"]
        done: bool = body["cases"] == len(ids) and closed[2] == 0
        return done and report.get("cases", 0) >= len(ids)

    wait_for_sync(audited, 180, "the audit has every case closed and a verify run over them")
    return ids


def sign_in(page: Page, area: str, name: str) -> None:
    page.goto(f"/{area}/")
    page.get_by_label("账号").fill(name)
    page.get_by_label("密码").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="登录").click()


def table_counts(page: Page, chart: str) -> list[list[int]]:
    """The exact counts in a chart's table, one list per series (column)."""
    rows: list[list[int]] = page.evaluate(
        """name => [...document.querySelectorAll(`#t-${name} tbody tr`)].map(
             tr => [...tr.querySelectorAll('td')].map(td => Number(td.textContent)))""",
        chart,
    )
    series = len(page.locator(f"#t-{chart} thead th[data-key]").all())
    return [[r[i] for r in rows] for i in range(series)]


def drawn_points(page: Page, chart: str) -> list[list[int]]:
    """The data points Chart.js holds for a chart's canvas."""
    points: list[list[int]] = page.evaluate(
        """name => Chart.getChart(document.getElementById(`c-${name}`))
             .data.datasets.map(d => d.data)""",
        chart,
    )
    return points


def check_charts(page: Page, names: tuple[str, ...]) -> dict[str, list[list[int]]]:
    """Every chart drawn, its points equal to its table's counts; the counts by chart."""
    found = {}
    for name in names:
        canvas = page.locator(f"#c-{name}")
        assert canvas.get_attribute("data-drawn") == "yes", name
        box = canvas.bounding_box()
        assert box is not None
        assert box["height"] > 100, (name, box)
        counts = table_counts(page, name)
        assert drawn_points(page, name) == counts, name
        found[name] = counts
    return found


def test_auditor_dashboard_and_clerk_community_page(
    pipeline: tuple[Pipeline, int],
    cases: list[str],
    browser: Browser,
    shots: Path,
) -> None:
    running, _ = pipeline
    watch = Watch()
    desk = browser.new_context(
        base_url=running.base,
        locale="zh-CN",
        viewport={"width": 1280, "height": 900},
        accept_downloads=True,
    )
    watch.attach(desk)
    page = desk.new_page()

    # --- the auditor's dashboard --------------------------------------------------------
    sign_in(page, "desk", AUDITOR)
    page.wait_for_selector("#verification")
    answer = page.goto("/desk/")
    assert answer is not None
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    cookies = {c["name"]: c for c in desk.cookies()}
    assert cookies["od_desk_access"]["path"] == "/desk"
    assert cookies["od_desk_access"]["httpOnly"]
    assert cookies["od_desk_access"]["sameSite"] == "Strict"
    verdict = page.locator("#verdict")
    assert verdict.inner_text() == "零违规"
    assert verdict.get_attribute("data-violations") == "0"
    assert "年" in page.locator("#run-at").inner_text()  # the run's time, in the local form
    assert page.locator("#cases-total").inner_text() == str(len(cases))
    assert page.locator("#on-spot-share").inner_text() == "40.0%"  # 2 of 5 closed on the spot
    counts = check_charts(page, CHARTS)
    assert counts["on_spot"] == [[2, 3, 0]]
    assert sum(counts["close_time"][0]) == len(cases)
    community_rows = page.locator("#t-per_community tbody th").all_inner_texts()
    assert community_rows == [HOME, OTHER]
    approved = (
        page.locator("#t-per_community thead th[data-key]").all_inner_texts().index("准予办理")
    )
    assert counts["per_community"][approved] == [3, 2]
    by_dept = counts["per_day_department"]  # both slips count under HR, one under SS
    assert [sum(column) for column in by_dept] == [5, 3]
    page.screenshot(path=shots / "20-desk-auditor.png", full_page=True)

    # The CSV of a chart: the same figures, machine words, ISO dates.
    with page.expect_download() as download:
        page.locator("#s-per_community a.csv").click()
    saved = download.value.path()
    rows = list(csv.reader(io.StringIO(Path(saved).read_text(encoding="utf-8-sig"))))
    assert rows[0] == ["community_code", "open", "waiting_info", "approved", "rejected"]
    assert rows[1:] == [[HOME, "0", "0", "3", "0"], [OTHER, "0", "0", "2", "0"]]
    with page.expect_download() as download:
        page.locator("#s-per_day_department a.csv").click()
    days = list(csv.reader(io.StringIO(Path(download.value.path()).read_text("utf-8-sig"))))
    assert days[0] == ["day", "hr_registration", "social_security"]
    assert sum(int(r[1]) for r in days[1:]) == 5
    assert all(len(r[0]) == 10 and r[0][4] == "-" for r in days[1:])

    # English, dates in its form.
    with page.expect_navigation():
        page.get_by_role("button", name="English").click()
    assert page.locator("#verdict").inner_text() == "zero violations"
    first_day = page.locator("#t-per_day_department tbody th").first.inner_text()
    assert first_day == days[1][0]
    check_charts(page, CHARTS)
    page.screenshot(path=shots / "21-desk-auditor-english.png", full_page=True)
    with page.expect_navigation():
        page.get_by_role("button", name="中文").click()

    # --- a centre head of another centre: its own centre's cases only ---------------------
    head = browser.new_context(base_url=running.base, locale="zh-CN")
    watch.attach(head)
    other = head.new_page()
    sign_in(other, "desk", "head-c02")
    other.wait_for_selector("#verification")
    assert other.locator("#cases-total").inner_text() == "0"
    assert "C02" in other.locator("h1").inner_text()
    head.close()
    # ... and a clerk is no dashboard reader.
    clerkish = browser.new_context(base_url=running.base, locale="zh-CN")
    watch.attach(clerkish)
    refused = clerkish.new_page()
    sign_in(refused, "desk", CLERK)
    assert "不是审计人员" in refused.locator("#errors").inner_text()
    clerkish.close()

    # --- the clerk's community page -----------------------------------------------------
    window = browser.new_context(
        base_url=running.base, locale="zh-CN", viewport={"width": 1280, "height": 900}
    )
    watch.attach(window)
    clerk = window.new_page()
    sign_in(clerk, "window", CLERK)
    with clerk.expect_navigation():
        clerk.locator("#to-communities").click()
    assert clerk.locator("#communities tbody tr").count() == 2
    clerk.screenshot(path=shots / "22-window-communities.png", full_page=True)
    with clerk.expect_navigation():
        clerk.get_by_role("link", name=f"查看 {HOME}").click()
    assert clerk.url.endswith(f"/window/communities/{HOME}")
    assert clerk.locator("#cases-total").inner_text() == "3"
    found = check_charts(clerk, ("per_item", "per_day", "due"))
    items = clerk.locator("#t-per_item tbody th").all_inner_texts()
    assert items == ["SS-UNEMPLOYMENT-BENEFIT"]
    keys = clerk.locator("#t-per_item thead th[data-key]").all_inner_texts()
    assert found["per_item"][keys.index("准予办理")] == [3]
    assert clerk.locator("#late").inner_text().count("C01-") == 0  # all closed: none due
    clerk.screenshot(path=shots / "23-window-community.png", full_page=True)
    watch.clean()
    window.close()
    desk.close()
