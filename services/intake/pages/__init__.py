"""Pages people use, served by intake: the window page (``/window/``, with its community
page) for clerks, the citizen's phone page (``/my/``) and the dashboard (``/desk/``) for
auditors, admins and centre heads. Server-rendered (Jinja2), a little script, every asset
served here (``/static/pages/``), no front-end build. See :mod:`.web` for the safety
rules every page follows."""

from __future__ import annotations

import re

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import Response

from services.intake.pages import i18n
from services.intake.pages.community import CommunityPages
from services.intake.pages.desk import DeskPages
from services.intake.pages.figures import ChartLibrary
from services.intake.pages.phone import PhoneDesk
from services.intake.pages.web import (
    LANG_COOKIE,
    Api,
    FormError,
    Page,
    script_file,
    static_file,
)
from services.intake.pages.window import WindowDesk
from shared.contracts.catalogue import Catalogue
from shared.platform.settings import Settings
from shared.platform.tokens import TokenVerifier

__all__ = ["add_routes"]

# The pages a switch may return to (a page reached by a post returns to its start).
_BACK = re.compile(
    r"^/(window/(items/[A-Z0-9-]{1,80}|cases/[0-9a-f-]{36}(/receipt)?"
    r"|communities(/[0-9A-Za-z-]{1,40})?)?|my/(case)?|desk/)$"
)


def add_routes(
    app: FastAPI,
    settings: Settings,
    pool: asyncpg.Pool,
    verifier: TokenVerifier,
    catalogue: Catalogue,
) -> None:
    """The pages on intake's FastAPI app; they call the same app's API in-process."""
    api = Api(app)
    window = WindowDesk(api, settings, pool, verifier, catalogue)
    window.add_routes(app)
    PhoneDesk(api, settings, catalogue).add_routes(app)
    library = ChartLibrary(settings.chartjs_file)
    DeskPages(api, settings, verifier, library).add_routes(app)
    CommunityPages(window, settings, library).add_routes(app)

    @app.get("/static/pages/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name == "chart.js":  # Chart.js, from Debian's libjs-chart.js
            return script_file(library.body)
        return static_file(name)

    @app.post("/lang", include_in_schema=False)
    async def switch_language(request: Request) -> Response:
        """The language switch: a posted form (with its CSRF token); remembered a year."""
        page = Page(request)
        try:
            form = await page.posted()
        except FormError:
            return page.refuse()
        lang = form.get("lang", i18n.DEFAULT)
        if lang not in i18n.LANGUAGES:
            lang = i18n.DEFAULT
        back = form.get("back", "/window/")
        if not _BACK.fullmatch(back):
            back = (
                "/my/"
                if back.startswith("/my")
                else "/desk/"
                if back.startswith("/desk")
                else "/window/"
            )
        page.cookies.append((LANG_COOKIE, lang, "/", 365 * 86400))
        return page.redirect(back)
