"""The citizen's page (``/my/``), made for a phone: the receipt number and the last four
characters of the ID number ask for a one-time code; the code opens the case.

All three steps go through intake's citizen API in-process (``POST /citizen/code``,
``POST /citizen/session``, ``GET /citizen/case``), so its rate limits, its same answer
whether or not the receipt matched, and its record of the read all hold. The citizen
token is kept in an HttpOnly ``SameSite=Strict`` cookie scoped to ``/my``; the receipt
number and the ID digits travel only in posted forms, never in a URL.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from services.intake.pages.web import Api, FormError, Page, by_field, details, page_route
from services.intake.pages.window import promised
from shared.contracts.catalogue import Catalogue
from shared.contracts.workdays import workdays_for
from shared.platform.settings import Settings

CITIZEN = "od_citizen"
PATH = "/my"


class PhoneDesk:
    """The citizen page's routes (:meth:`add_routes`)."""

    def __init__(self, api: Api, settings: Settings, catalogue: Catalogue) -> None:
        self.api = api
        self.settings = settings
        self.catalogue = catalogue
        self.workdays = workdays_for(settings.calendar_dir, settings.test_working_day_seconds)

    def add_routes(self, app: FastAPI) -> None:
        page_route(app, "GET", PATH, self.to_start)
        page_route(app, "GET", f"{PATH}/", self.start)
        page_route(app, "POST", f"{PATH}/code", self.ask_code)
        page_route(app, "POST", f"{PATH}/session", self.open_case)
        page_route(app, "GET", f"{PATH}/case", self.case)
        page_route(app, "POST", f"{PATH}/signout", self.sign_out)

    async def to_start(self, request: Request) -> Response:
        return Page(request).redirect(f"{PATH}/")

    async def start(self, request: Request) -> Response:
        return Page(request).render("my_start.html", values={}, fields={}, errors=[])

    async def ask_code(self, request: Request) -> Response:
        page = Page(request)
        try:
            form = await page.posted()
        except FormError:
            return page.refuse()
        values = {k: form.get(k, "").strip() for k in ("receipt_no", "id_last4")}
        answer = await self.api.call(request, "POST", "/citizen/code", json=values)
        if answer.status_code != 202:
            fields, general = by_field(details(answer))
            return page.render(
                "my_start.html",
                values=values,
                fields=fields,
                errors=general,
            )
        sent = str(answer.json().get("detail", ""))
        return page.render("my_code.html", values=values, sent=sent, fields={}, errors=[])

    async def open_case(self, request: Request) -> Response:
        page = Page(request)
        try:
            form = await page.posted()
        except FormError:
            return page.refuse()
        values = {k: form.get(k, "").strip() for k in ("receipt_no", "id_last4", "code")}
        answer = await self.api.call(request, "POST", "/citizen/session", json=values)
        if answer.status_code != 200:
            fields, general = by_field(details(answer))
            return page.render(
                "my_code.html",
                values=values,
                sent="",
                fields=fields,
                errors=general,
            )
        tokens = answer.json()
        page.cookies.append((CITIZEN, str(tokens["access_token"]), PATH, int(tokens["expires_in"])))
        return page.redirect(f"{PATH}/case")

    async def case(self, request: Request) -> Response:
        page = Page(request)
        token = request.cookies.get(CITIZEN)
        if not token:
            return page.redirect(f"{PATH}/")
        answer = await self.api.call(request, "GET", "/citizen/case", token=token)
        if answer.status_code == 401:
            page.cleared.append((CITIZEN, PATH))
            return page.render("my_start.html", values={}, fields={}, errors=[page.t("signed_out")])
        if answer.status_code != 200:
            message = "; ".join(str(d["msg"]) for d in details(answer))
            return page.render("message.html", status=answer.status_code, message=message)
        view: dict[str, Any] = answer.json()
        item = self.catalogue.get(view["item_code"])
        return page.render(
            "my_case.html", view=view, promised=promised(item, view["accepted_at"], self.workdays)
        )

    async def sign_out(self, request: Request) -> Response:
        page = Page(request)
        try:
            await page.posted()
        except FormError:
            return page.refuse()
        page.cleared.append((CITIZEN, PATH))
        return page.redirect(f"{PATH}/")
