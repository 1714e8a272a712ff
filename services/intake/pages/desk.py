"""The dashboard (``/desk/``) for auditors, admins and centre heads: the audit's last
verify run (every violation with its case, its event and its place in the log, or
"zero violations" with the time of the run) and the statistics as charts (Chart.js from
Debian's libjs-chart.js, served from here), each with its exact counts beside it and
its figures as CSV (``/desk/csv/<chart>.csv``).

Served by intake, beside the window page: intake owns the sign-in and the pages' safety
(CSP, CSRF, cookies); the figures are the audit's, read from its API with the signed-in
person's own token, so the audit decides what each role sees (a head: its centre).
The tokens live in HttpOnly ``SameSite=Strict`` cookies scoped to ``/desk``, apart from
the window's (``/window``). Cookies are scoped by host, not by port: no page here sets
a cookie the audit's API would read (it reads only the Authorization header).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from services.intake.pages import figures
from services.intake.pages.sessions import Sessions
from services.intake.pages.web import Api, FormError, Page, page_route
from shared.platform.settings import Settings
from shared.platform.tokens import TokenVerifier

PATH = "/desk"
ROLES = ("auditor", "admin", "head")


class DeskPages:
    """The dashboard's routes (:meth:`add_routes`)."""

    def __init__(
        self, api: Api, settings: Settings, verifier: TokenVerifier, charts: figures.ChartLibrary
    ) -> None:
        self.settings = settings
        self.sessions = Sessions(
            api,
            settings,
            verifier,
            PATH,
            ROLES,
            access="od_desk_access",
            refresh="od_desk_refresh",
            refused="not_desk",
        )
        self.library = charts

    def add_routes(self, app: FastAPI) -> None:
        page_route(app, "GET", PATH, self.to_home)
        page_route(app, "GET", f"{PATH}/", self.home)
        page_route(app, "POST", f"{PATH}/signin", self.sign_in)
        page_route(app, "POST", f"{PATH}/signout", self.sign_out)
        page_route(app, "GET", f"{PATH}/csv/{{name}}", self.csv)

    async def to_home(self, request: Request) -> Response:
        return Page(request).redirect(f"{PATH}/")

    def _signin(self, page: Page, **context: Any) -> Response:
        context = {"name": "", "fields": {}, "errors": []} | context
        return page.render("desk_signin.html", **context)

    async def home(self, request: Request) -> Response:
        page = Page(request)
        session = await self.sessions.who(page)
        if session is None:
            return self._signin(page)
        claims, token = session
        answer = await figures.audit_get(self.settings, "/dashboard", token)
        body = answer.body or {}
        made = figures.charts(body, page.lang)
        return page.render(
            "desk_home.html",
            who=claims,
            problem=answer.problem,
            detail=answer.detail,
            body=body,
            charts=made,
            specs=figures.specs(made),
            drawn=self.library.body is not None,
            run=body.get("verification"),
            share=body.get("on_spot_share", 0.0),
            csv_base=f"{PATH}/csv",
        )

    async def csv(self, request: Request, name: str) -> Response:
        """One chart's figures as CSV (UTF-8 with a byte-order mark, so a spreadsheet
        opens the Chinese right)."""
        page = Page(request)
        session = await self.sessions.who(page)
        match = re.fullmatch(r"([a-z_]{1,40})\.csv", name)
        if session is None or match is None:
            return page.render("message.html", status=404, message=page.t("not_found"))
        answer = await figures.audit_get(self.settings, "/dashboard", session[1])
        return csv_answer(page, answer, match.group(1))

    async def sign_in(self, request: Request) -> Response:
        page = Page(request)
        try:
            form = await page.posted()
        except FormError:
            return page.refuse()
        errors = await self.sessions.sign_in(page, form)
        if errors is None:
            return page.redirect(f"{PATH}/")
        fields, general = errors
        if fields:
            return self._signin(page, name=form.get("name", ""), fields=fields)
        return self._signin(page, name=form.get("name", ""), errors=general)

    async def sign_out(self, request: Request) -> Response:
        page = Page(request)
        try:
            await page.posted()
        except FormError:
            return page.refuse()
        await self.sessions.sign_out(page)
        return page.redirect(f"{PATH}/")


def csv_answer(page: Page, answer: figures.Answer, name: str) -> Response:
    """The chart ``name`` of the audit's ``answer`` as a CSV download."""
    if answer.body is None:
        message = f"{page.t(answer.problem or 'audit_down')} {answer.detail}"
        return page.render("message.html", status=503, message=message)
    table = answer.body.get("charts", {}).get(name)
    if table is None:
        return page.render("message.html", status=404, message=page.t("not_found"))
    chart = figures.Chart.of(name, table, page.lang)
    response = Response(
        "\ufeff" + chart.csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )
    return page.finish(response)
