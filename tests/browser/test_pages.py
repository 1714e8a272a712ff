"""The window page and the citizen's phone page in real headless Chromium (Debian's
``chromium``, driven by Playwright at ``/usr/bin/chromium``; Playwright's own browsers
are never downloaded), against the services as real processes on the real stack.

A clerk signs in by keyboard, finds a two-step item, sees the API's own checks beside
the fields, files the case, prints the receipt, and sees the case close; a citizen on a
phone-sized window reads the case with a one-time code from the notifier file; an XSS
payload goes into every text field. Any console error, page error or dialog fails the
test. Each step leaves a screenshot in ``.data/screenshots/`` (``ONEDOOR_SCREENSHOTS``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from services.intake.pages.i18n import LOCAL
from shared.contracts.identity import validate_mobile, validate_resident_id
from shared.contracts.workdays import WorkingCalendar
from tests.conftest import Stack
from tests.e2e.harness import Pipeline, run_services
from tests.support import builders
from tests.support.builders import person
from tests.support.staff import AUDITOR, CLERK, PASSWORD
from tests.support.waiting import wait_for_sync

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

SERVICES = ["intake", "router", "hr_registration", "social_security"]
ITEM = "SS-UNEMPLOYMENT-BENEFIT"  # hr_registration, then social_security
XSS = "\"'><img src=x onerror=alert(1)><script>alert(2)</script>"


def zh_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


class Watch:
    """Everything a page must not do: console errors, uncaught errors, dialogs; and every
    URL it asked for (none may carry personal data)."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.urls: list[str] = []

    def attach(self, context: BrowserContext) -> None:
        context.on("page", self.page)
        context.on("request", lambda r: self.urls.append(r.url))
        context.on(
            "response",
            lambda r: self.problems.append(f"{r.status} from {r.url}") if r.status >= 500 else None,
        )

    def page(self, page: Page) -> None:
        page.on(
            "console",
            lambda m: (
                self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
            ),
        )
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))

        def dialog(d: Any) -> None:
            self.problems.append(f"dialog fired: {d.message}")
            d.dismiss()

        page.on("dialog", dialog)

    def clean(self) -> None:
        assert not self.problems, self.problems


@pytest.fixture(scope="module")
def pipeline(
    stack: Stack, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Pipeline, Path]]:
    logs = tmp_path_factory.mktemp("logs")
    outbox = logs / "sms.jsonl"
    with run_services(
        {name: ["-m", f"services.{name}"] for name in SERVICES},
        kafka=stack.kafka,
        database_url=database_url,
        logs=logs,
        extra_env={"ONEDOOR_NOTIFIER": "file", "ONEDOOR_NOTIFIER_FILE": str(outbox)},
    ) as pipeline:
        yield pipeline, outbox


def sms_code(outbox: Path, phone: str, seen: int) -> str | None:
    """The code in the notifier file's newest message to ``phone`` after line ``seen``."""
    if not outbox.exists():
        return None
    lines = outbox.read_text(encoding="utf-8").splitlines()[seen:]
    for line in reversed(lines):
        message = json.loads(line)
        found = re.search(r"\d{6}", message["text"])
        if message["to"] == phone and found:
            return found.group()
    return None


def test_clerk_files_prints_and_citizen_reads(
    pipeline: tuple[Pipeline, Path],
    browser: Browser,
    shots: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    running, outbox = pipeline
    base = running.base
    watch = Watch()
    desk = browser.new_context(
        base_url=base, locale="zh-CN", viewport={"width": 1280, "height": 900}
    )
    watch.attach(desk)
    page = desk.new_page()

    # --- sign in by keyboard alone ------------------------------------------------------
    answer = page.goto("/window/")
    assert answer is not None
    headers = answer.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.get_by_role("button", name="登录").is_visible()
    page.screenshot(path=shots / "01-window-sign-in.png")
    started = time.monotonic()
    assert page.evaluate("document.activeElement.id") == "f-name"  # autofocus
    page.keyboard.type(CLERK)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "f-password"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), "the focused field shows no focus ring"
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{base}/window/"
    assert page.get_by_text(f"当前登录: {CLERK}").is_visible()
    cookies = {c["name"]: c for c in desk.cookies()}
    for name in ("od_access", "od_refresh", "od_csrf"):
        assert cookies[name]["httpOnly"], name
        assert cookies[name]["sameSite"] == "Strict", name
    assert "eyJ" not in page.content()  # the token is nowhere in the page

    # --- find the two-step item ------------------------------------------------------------
    page.get_by_label("事项名称、编码或关键词").fill("unemployment insurance benefit")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{base}/window/search"  # posted: what was typed is in no URL
    link = page.locator(f"a[href='/window/items/{ITEM}']")
    assert link.is_visible()
    page.screenshot(path=shots / "02-window-search.png")
    link.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_url(f"**/window/items/{ITEM}")

    # Every field has a label, and the form is generated from the item's fields.
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('main input:not([type=hidden])')]
             .filter(i => i.labels.length === 0).map(i => i.name)"""
    )
    assert unlabelled == []
    for field in ("last_employer", "separation_date", "insured_months", "education"):
        assert page.locator(f"#f-form\\.{field}").count() == 1
    # The keyboard walks the form in the order it reads, and ends on its button.
    order = page.evaluate(
        """[...document.querySelectorAll('main form input:not([type=hidden]), main form button')]
             .map(e => e.id || e.textContent.trim())"""
    )
    page.locator("#f-applicant\\.name").focus()
    walked = [page.evaluate("document.activeElement.id")]
    for _ in range(4 * len(order)):  # a date field takes a Tab per part (year, month, day)
        if len(walked) == len(order):
            break
        page.keyboard.press("Tab")
        now = page.evaluate(
            "document.activeElement.id || document.activeElement.textContent.trim()"
        )
        if now != walked[-1]:
            walked.append(now)
    assert walked == order
    assert order[-1] == "提交受理"

    # --- the API's own checks, beside the fields, in its own words -------------------------
    applicant = person()
    bad_id = applicant["id_number"][:-1] + ("0" if applicant["id_number"][-1] != "0" else "1")
    page.get_by_label("姓名").fill(applicant["name"])
    page.get_by_label("公民身份号码").fill(bad_id)
    page.get_by_label("手机号码").fill("12345")
    page.get_by_label("社区（村）代码").fill(builders.COMMUNITY)
    with page.expect_navigation():
        page.get_by_role("button", name="提交受理").click()
    page.wait_for_selector("#errors")
    assert page.evaluate("document.activeElement.id") == "errors"  # the keyboard is taken there
    assert page.locator("#e-applicant\\.id_number").inner_text() == validate_resident_id(bad_id)
    assert page.locator("#e-applicant\\.phone").inner_text() == validate_mobile("12345")
    assert page.locator("#e-form\\.last_employer").is_visible()  # required, as the API says
    assert page.locator("#f-applicant\\.name").input_value() == applicant["name"]  # kept
    page.screenshot(path=shots / "03-window-form-api-errors.png", full_page=True)

    # --- file it ------------------------------------------------------------------------------
    page.get_by_label("公民身份号码").fill(applicant["id_number"])
    page.get_by_label("手机号码").fill(applicant["phone"])
    form = builders.BENEFIT_FORM
    for name, value in form.items():
        page.locator(f"#f-form\\.{name}").fill(str(value))
    with page.expect_navigation():
        page.get_by_role("button", name="提交受理").click()
    page.wait_for_url("**/receipt")
    receipt_no = page.locator("#receipt-no").inner_text()
    assert re.fullmatch(r"C01-\d{8}-\d{6}", receipt_no), receipt_no
    today = datetime.now(LOCAL).date()
    # The router's promise: 10 working days after today, on the shipped calendar.
    due = WorkingCalendar.load().due_day(today, 10)
    assert page.locator("#promised").inner_text() == zh_date(due)
    page.screenshot(path=shots / "04-window-receipt.png", full_page=True)
    page.emulate_media(media="print")
    page.pdf(path=str(shots / "05-window-receipt-print.pdf"), format="A5")
    printed = time.monotonic() - started
    assert not page.locator("header.bar").is_visible()  # print media: the receipt alone
    page.screenshot(path=shots / "05-window-receipt-print.png", full_page=True)
    page.emulate_media(media="screen")
    with capsys.disabled():
        print(
            f"\n[browser] window page, sign-in to printed receipt (two-step case): {printed:.2f} s"
        )

    # --- watch it close ------------------------------------------------------------------------
    with page.expect_navigation():
        page.locator("#to-status").click()
    page.wait_for_url(re.compile(r"/window/cases/[0-9a-f-]{36}$"))
    case_url = page.url

    def closed() -> bool:
        page.reload()
        return page.locator("#status").get_attribute("data-status") == "closed"

    wait_for_sync(closed, 60, f"case {receipt_no} closed on the window page", interval=0.5)
    assert "准予办理" in page.locator("#status").inner_text()
    steps = page.locator(".timeline li")
    assert steps.count() == 2
    assert all("已通过" in steps.nth(i).inner_text() for i in range(2))
    page.screenshot(path=shots / "06-window-case-closed.png", full_page=True)

    # --- look it up by receipt number (posted; the page is named by the case id) ------------
    page.goto("/window/")
    page.get_by_label("受理编号或办件编号").fill(receipt_no)
    with page.expect_navigation():
        page.get_by_role("button", name="查询").click()
    page.wait_for_url(case_url)
    assert page.locator("#receipt-no").inner_text() == receipt_no
    page.screenshot(path=shots / "07-window-lookup.png", full_page=True)

    # --- an XSS payload in every text field of the window page -------------------------------
    page.goto(f"/window/items/{ITEM}")
    texts = [
        "#f-applicant\\.name",
        "#f-applicant\\.id_number",
        "#f-applicant\\.phone",
        "#f-community_code",
        *(f"#f-form\\.{n}" for n in ("last_employer", "education", "desired_occupation")),
    ]
    for selector in texts:
        page.locator(selector).fill(XSS)
    with page.expect_navigation():
        page.get_by_role("button", name="提交受理").click()
    page.wait_for_selector("#errors")
    for selector in texts:
        assert page.locator(selector).input_value() == XSS, selector
    assert page.locator("img[src=x]").count() == 0
    page.screenshot(path=shots / "08-xss-form.png", full_page=True)
    page.goto("/window/")
    page.get_by_label("事项名称、编码或关键词").fill(XSS)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_selector(".empty")
    assert page.locator(".empty .typed").inner_text() == XSS  # shown as text
    page.get_by_label("受理编号或办件编号").fill(XSS)
    with page.expect_navigation():
        page.get_by_role("button", name="查询").click()
    page.wait_for_selector("#e-lookup")
    assert page.locator("#e-lookup .typed").inner_text() == XSS
    assert page.locator("img[src=x]").count() == 0
    page.screenshot(path=shots / "09-xss-search-lookup.png", full_page=True)

    # --- CSRF: a post without the form's token, or from another site, is refused -------------
    refused = page.request.post(f"{base}/window/lookup", form={"q": receipt_no})
    assert refused.status == 403
    foreign = page.request.post(
        f"{base}/window/lookup",
        form={"q": receipt_no, "csrf": cookies["od_csrf"]["value"]},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status == 403
    watch.clean()

    # --- a signed-in auditor is not a clerk; the sign-in name is shown as text --------------
    other = browser.new_context(base_url=base, locale="zh-CN")
    watch.attach(other)
    signin = other.new_page()
    signin.goto("/window/")
    signin.get_by_label("账号").fill(XSS)
    signin.get_by_label("密码").fill("wrong")
    with signin.expect_navigation():
        signin.get_by_role("button", name="登录").click()
    signin.wait_for_selector("#errors")
    assert signin.locator("#f-name").input_value() == XSS
    signin.get_by_label("账号").fill(AUDITOR)
    signin.get_by_label("密码").fill(PASSWORD)
    with signin.expect_navigation():
        signin.get_by_role("button", name="登录").click()
    signin.wait_for_selector("#errors")
    assert "不是窗口工作人员" in signin.locator("#errors").inner_text()
    signin.screenshot(path=shots / "10-xss-sign-in-and-auditor.png")
    other.close()

    # --- the citizen, on a phone ---------------------------------------------------------------
    phone = browser.new_context(
        base_url=base,
        locale="zh-CN",
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    watch.attach(phone)
    my = phone.new_page()
    my.goto("/my/")
    my.get_by_label("受理编号").fill(XSS)
    my.get_by_label("证件号码后四位").fill("1234")
    with my.expect_navigation():
        my.get_by_role("button", name="获取验证码").click()
    my.wait_for_selector("#errors")
    assert my.locator("#f-receipt_no").input_value() == XSS
    assert my.locator("img[src=x]").count() == 0
    my.screenshot(path=shots / "11-phone-xss.png", full_page=True)
    seen = len(outbox.read_text().splitlines()) if outbox.exists() else 0
    my.get_by_label("受理编号").fill(receipt_no)
    my.get_by_label("证件号码后四位").fill(applicant["id_number"][-4:])
    button = my.get_by_role("button", name="获取验证码")
    box = button.bounding_box()
    assert box is not None
    assert box["height"] >= 44, box  # a large touch target
    my.screenshot(path=shots / "12-phone-start.png", full_page=True)
    with my.expect_navigation():
        button.tap()
    my.wait_for_selector("#f-code")
    code = wait_for_sync(
        lambda: sms_code(outbox, applicant["phone"], seen), 30, "the code in the notifier file"
    )
    my.screenshot(path=shots / "13-phone-code.png", full_page=True)
    my.get_by_label("验证码（6位数字）").fill(code)
    with my.expect_navigation():
        my.get_by_role("button", name="查看办件").tap()
    my.wait_for_url("**/my/case")
    assert my.locator("#status").get_attribute("data-status") == "closed"
    assert "准予办理" in my.locator("#status").inner_text()
    body = my.locator("main").inner_text()
    assert applicant["id_number"] not in body  # masked
    assert applicant["phone"] not in body
    assert zh_date(today) in body
    width = my.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the phone page scrolls sideways ({width}px)"
    my.screenshot(path=shots / "14-phone-case.png", full_page=True)
    with my.expect_navigation():
        my.get_by_role("button", name="English").tap()
    my.wait_for_url("**/my/case")
    assert my.locator("html").get_attribute("lang") == "en"
    assert "closed" in my.locator("#status").inner_text()
    assert today.isoformat() in my.locator("main").inner_text()
    my.screenshot(path=shots / "15-phone-case-english.png", full_page=True)

    # --- nothing personal in any URL, nothing wrong in any page -------------------------------
    private = (applicant["id_number"], applicant["phone"], applicant["id_number"][-4:], code)
    for url in watch.urls:
        assert not any(p in url for p in private), url
        assert receipt_no not in url, url
    watch.clean()
    phone.close()
    desk.close()
