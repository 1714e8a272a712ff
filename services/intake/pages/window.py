"""The window page (``/window/``): a clerk signs in, finds an item, fills the form the
catalogue gives it, submits, prints the receipt, and looks cases up.

The access and refresh tokens are kept in HttpOnly ``SameSite=Strict`` cookies scoped to
``/window`` (the script never sees them; they never appear in a URL). An expired access
token is renewed with the refresh token on the next page; signing out revokes it.
Every case is filed, and every case is read, through intake's own API in-process
(``POST /cases`` with an Idempotency-Key from the form, so a double click files one
case; ``GET /cases/{id}``, which records the read as a PersonalDataAccessed).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import Response

from services.intake.citizen import DEPARTMENT_LABELS, RECEIPT
from services.intake.pages.sessions import Sessions
from services.intake.pages.web import Api, FormError, Page, by_field, details, page_route
from shared.contracts.catalogue import Catalogue, Item
from shared.contracts.workdays import Workdays, workdays_for
from shared.platform.settings import Settings
from shared.platform.tokens import Claims, TokenVerifier

ACCESS = "od_access"
REFRESH = "od_refresh"
PATH = "/window"
MAX_RESULTS = 60
_WHOLE = re.compile(r"^[+-]?\d{1,30}$")


def matches(item: Item, query: str) -> bool:
    """Whether ``query`` (any case) is in the item's code, name, steps, departments
    (their Chinese and English names) or form labels."""
    if not query:
        return True
    words = [item.code, item.name]
    for step in item.steps:
        words += [step.name, step.department, DEPARTMENT_LABELS.get(step.department, "")]
    words += [spec.label for spec in item.required_fields]
    needle = query.casefold()
    return any(needle in w.casefold() for w in words)


def case_body(item: Item, form: dict[str, str]) -> dict[str, Any]:
    """The POST /cases body from the posted form, with as little judgement as possible:
    the API decides what is wrong and says so. A blank field is left out (the API says
    it is required); a whole number is sent as a number, anything else as typed."""
    fields: dict[str, Any] = {}
    for spec in item.required_fields:
        raw = form.get(f"form.{spec.name}")
        if spec.type == "bool":
            fields[spec.name] = raw == "on"
        elif raw is None or not raw.strip():
            continue
        elif spec.type == "int" and _WHOLE.fullmatch(raw.strip()):
            fields[spec.name] = int(raw.strip())
        else:
            fields[spec.name] = raw
    return {
        "item_code": item.code,
        "applicant": {
            "kind": item.applicant_kind,
            "name": form.get("applicant.name", ""),
            "id_number": form.get("applicant.id_number", "").strip(),
            "phone": form.get("applicant.phone", "").strip(),
        },
        "community_code": form.get("community_code", "").strip(),
        "form": fields,
        "channel": "window",
    }


def step_states(item: Item | None, view: dict[str, Any]) -> list[tuple[str, str]]:
    """Each step of the routing slip with its state key (for the timeline)."""
    if item is None:
        return []
    status, outcome, current = view["status"], view.get("outcome"), view.get("current_step")
    states = []
    for index, step in enumerate(item.steps):
        if status == "closed" and outcome == "approved":
            state = "step_done"
        elif current is None:
            state = "step_not_reached" if status == "closed" else "step_pending"
        elif index < current:
            state = "step_done"
        elif index == current:
            state = {
                "closed": "step_rejected",
                "waiting_info": "step_waiting_info",
            }.get(status, "step_current")
        else:
            state = "step_not_reached" if status == "closed" else "step_pending"
        states.append((step.name, state))
    return states


def promised(item: Item | None, accepted_at: str, workdays: Workdays) -> datetime | None:
    """The last day of the promise, as the router counts it: the item's promised days
    in working days after the day of acceptance (``shared.contracts.workdays``); the
    promise ends as that day does."""
    if item is None:
        return None
    deadline = workdays.deadline(datetime.fromisoformat(accepted_at), item.promised_days)
    return deadline.due_by - timedelta(microseconds=1)


class WindowDesk:
    """The window page's routes (:meth:`add_routes`)."""

    def __init__(
        self,
        api: Api,
        settings: Settings,
        pool: asyncpg.Pool,
        verifier: TokenVerifier,
        catalogue: Catalogue,
    ) -> None:
        self.api = api
        self.settings = settings
        self.pool = pool
        self.catalogue = catalogue
        self.workdays = workdays_for(settings.calendar_dir, settings.test_working_day_seconds)
        self.sessions = Sessions(
            api,
            settings,
            verifier,
            PATH,
            ("clerk",),
            access=ACCESS,
            refresh=REFRESH,
            refused="not_clerk",
        )

    def add_routes(self, app: FastAPI) -> None:
        page_route(app, "GET", PATH, self.to_home)
        page_route(app, "GET", f"{PATH}/", self.home)
        page_route(app, "POST", f"{PATH}/signin", self.sign_in)
        page_route(app, "POST", f"{PATH}/signout", self.sign_out)
        page_route(app, "POST", f"{PATH}/lookup", self.lookup)
        page_route(app, "POST", f"{PATH}/search", self.search)
        page_route(app, "GET", f"{PATH}/items/{{code}}", self.item_form)
        page_route(app, "POST", f"{PATH}/items/{{code}}", self.file_case)
        page_route(app, "GET", f"{PATH}/cases/{{case_id}}", self.case_page)
        page_route(app, "GET", f"{PATH}/cases/{{case_id}}/receipt", self.receipt)

    # ----------------------------------------------------------------- the session

    async def clerk(self, page: Page) -> tuple[Claims, str] | None:
        """The signed-in clerk and their access token (see :class:`Sessions`)."""
        return await self.sessions.who(page)

    def signin_page(self, page: Page, **context: Any) -> Response:
        """The sign-in form (again, with the API's answer). A form shown again is a page
        that loaded fine: 200, whatever the API answered (the browser would log a 4xx
        document as an error)."""
        context = {"name": "", "fields": {}, "errors": []} | context
        return page.render("window_signin.html", **context)

    # ------------------------------------------------------------------- the routes

    async def to_home(self, request: Request) -> Response:
        return Page(request).redirect(f"{PATH}/")

    async def home(self, request: Request) -> Response:
        page = Page(request)
        session = await self.clerk(page)
        if session is None:
            return self.signin_page(page)
        return self._home(page, session[0], "")

    async def search(self, request: Request) -> Response:
        """Items matching the posted words. Posted, not a query string: a clerk who types
        an ID number into the wrong box must not put it in a URL or an access log."""
        page = Page(request)
        try:
            form = await page.posted()
        except FormError:
            return page.refuse()
        session = await self.clerk(page)
        if session is None:
            return self.signin_page(page, errors=[page.t("signed_out")])
        return self._home(page, session[0], form.get("q", "")[:100])

    def _home(self, page: Page, claims: Claims, query: str, *, lookup: str = "") -> Response:
        found = [i for i in self.catalogue.items.values() if matches(i, query.strip())]
        found.sort(key=lambda i: i.code)
        return page.render(
            "window_home.html",
            clerk=claims,
            query=query,
            items=found[:MAX_RESULTS],
            total=len(found),
            lookup=lookup,
            departments=DEPARTMENT_LABELS,
        )

    async def sign_in(self, request: Request) -> Response:
        page = Page(request)
        try:
            form = await page.posted()
        except FormError:
            return page.refuse()
        errors = await self.sessions.sign_in(page, form)
        if errors is not None:
            fields, general = errors
            name = form.get("name", "")
            return self.signin_page(page, name=name, fields=fields, errors=general)
        return page.redirect(f"{PATH}/")

    async def sign_out(self, request: Request) -> Response:
        page = Page(request)
        try:
            await page.posted()
        except FormError:
            return page.refuse()
        await self.sessions.sign_out(page)
        return page.redirect(f"{PATH}/")

    async def lookup(self, request: Request) -> Response:
        """A case by its receipt number or its id, posted (never in a URL), then shown
        at its case page (named by its id only)."""
        page = Page(request)
        try:
            form = await page.posted()
        except FormError:
            return page.refuse()
        session = await self.clerk(page)
        if session is None:
            return self.signin_page(page, errors=[page.t("signed_out")])
        wanted = form.get("q", "").strip()[:100]
        case_id: UUID | None = None
        try:
            case_id = UUID(wanted)
        except ValueError:
            if re.fullmatch(RECEIPT, wanted):
                async with self.pool.acquire() as conn:
                    case_id = await conn.fetchval(
                        "SELECT case_id FROM cases WHERE receipt_no = $1", wanted
                    )
        if case_id is None:
            return self._home(page, session[0], "", lookup=wanted)
        return page.redirect(f"{PATH}/cases/{case_id}")

    async def item_form(self, request: Request, code: str) -> Response:
        page = Page(request)
        session = await self.clerk(page)
        if session is None:
            return self.signin_page(page)
        item = self.catalogue.get(code)
        if item is None:
            return page.render("message.html", status=404, message=page.t("not_found"))
        return self._form(page, session[0], item, {}, fields={}, errors=[], key=uuid.uuid4().hex)

    def _form(
        self,
        page: Page,
        clerk: Claims,
        item: Item,
        values: dict[str, str],
        *,
        fields: dict[str, str],
        errors: list[str],
        key: str,
    ) -> Response:
        return page.render(
            "window_form.html",
            clerk=clerk,
            item=item,
            values=values,
            fields=fields,
            errors=errors,
            key=key,
            departments=DEPARTMENT_LABELS,
        )

    async def file_case(self, request: Request, code: str) -> Response:
        page = Page(request)
        try:
            form = await page.posted()
        except FormError:
            return page.refuse()
        session = await self.clerk(page)
        if session is None:
            return self.signin_page(page, errors=[page.t("signed_out")])
        item = self.catalogue.get(code)
        if item is None:
            return page.render("message.html", status=404, message=page.t("not_found"))
        key = form.get("idempotency_key", "")
        if not re.fullmatch(r"[0-9a-f]{32}", key):
            key = uuid.uuid4().hex
        answer = await self.api.call(
            request,
            "POST",
            "/cases",
            json=case_body(item, form),
            token=session[1],
            headers={"Idempotency-Key": f"window-{key}"},
        )
        if answer.status_code in (200, 201):
            return page.redirect(f"{PATH}/cases/{answer.json()['case_id']}/receipt")
        fields, general = by_field(details(answer))
        return self._form(page, session[0], item, form, fields=fields, errors=general, key=key)

    async def _read(self, page: Page, case_id: str) -> tuple[Claims, dict[str, Any]] | Response:
        session = await self.clerk(page)
        if session is None:
            return self.signin_page(page)
        try:
            UUID(case_id)
        except ValueError:
            return page.render("message.html", status=404, message=page.t("not_found"))
        answer = await self.api.call(page.request, "GET", f"/cases/{case_id}", token=session[1])
        if answer.status_code != 200:
            message = "; ".join(str(d["msg"]) for d in details(answer))
            return page.render("message.html", status=answer.status_code, message=message)
        view: dict[str, Any] = answer.json()
        return session[0], view

    async def case_page(self, request: Request, case_id: str) -> Response:
        return await self._case(request, case_id, "window_case.html", with_steps=True)

    async def receipt(self, request: Request, case_id: str) -> Response:
        return await self._case(request, case_id, "receipt.html", with_steps=False)

    async def _case(
        self, request: Request, case_id: str, template: str, *, with_steps: bool
    ) -> Response:
        """A case read through the API, rendered with ``template`` (the case page also
        lists each step's state)."""
        page = Page(request)
        read = await self._read(page, case_id)
        if isinstance(read, Response):
            return read
        claims, view = read
        item = self.catalogue.get(view["item_code"])
        steps: dict[str, Any] = (
            {"steps": step_states(item, view), "departments": DEPARTMENT_LABELS}
            if with_steps
            else {}
        )
        return page.render(
            template,
            clerk=claims,
            view=view,
            item=item,
            promised=promised(item, view["accepted_at"], self.workdays),
            **steps,
        )
