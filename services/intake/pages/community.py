"""The window's community page (``/window/communities/``): a clerk picks a community
(neighbourhood committee) and sees its cases by item and status, those due and
overdue, and the counts per day: its own centre's cases only (the audit, whose
projection knows each case's community and promise, decides that from the clerk's
token). Communities are shown by their code.
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.responses import Response

from services.intake.pages import figures
from services.intake.pages.desk import csv_answer
from services.intake.pages.web import Page, page_route
from services.intake.pages.window import PATH, WindowDesk
from shared.platform.settings import Settings

CODE = re.compile(r"[0-9A-Za-z-]{1,40}")  # as the audit's API takes it


class CommunityPages:
    """The community page's routes (:meth:`add_routes`), behind the window's sign-in."""

    def __init__(
        self, window: WindowDesk, settings: Settings, library: figures.ChartLibrary
    ) -> None:
        self.window = window
        self.settings = settings
        self.library = library

    def add_routes(self, app: FastAPI) -> None:
        page_route(app, "GET", f"{PATH}/communities", self.listing)
        page_route(app, "GET", f"{PATH}/communities/{{code}}", self.detail)
        page_route(app, "GET", f"{PATH}/communities/{{code}}/csv/{{name}}", self.csv)

    async def listing(self, request: Request) -> Response:
        page = Page(request)
        session = await self.window.clerk(page)
        if session is None:
            return self.window.signin_page(page)
        answer = await figures.audit_get(self.settings, "/communities", session[1])
        return page.render(
            "window_communities.html",
            clerk=session[0],
            problem=answer.problem,
            detail=answer.detail,
            rows=(answer.body or {}).get("communities", []),
        )

    async def detail(self, request: Request, code: str) -> Response:
        page = Page(request)
        session = await self.window.clerk(page)
        if session is None:
            return self.window.signin_page(page)
        if not CODE.fullmatch(code):
            return page.render("message.html", status=404, message=page.t("not_found"))
        answer = await figures.audit_get(self.settings, f"/communities/{code}", session[1])
        body = answer.body or {}
        made = figures.charts(body, page.lang)
        return page.render(
            "window_community.html",
            clerk=session[0],
            code=code,
            problem=answer.problem,
            detail=answer.detail,
            body=body,
            charts=made,
            specs=figures.specs(made),
            drawn=self.library.body is not None,
            csv_base=f"{PATH}/communities/{code}/csv",
        )

    async def csv(self, request: Request, code: str, name: str) -> Response:
        page = Page(request)
        session = await self.window.clerk(page)
        match = re.fullmatch(r"([a-z_]{1,40})\.csv", name)
        if session is None or match is None or not CODE.fullmatch(code):
            return page.render("message.html", status=404, message=page.t("not_found"))
        answer = await figures.audit_get(self.settings, f"/communities/{code}", session[1])
        return csv_answer(page, answer, match.group(1))
