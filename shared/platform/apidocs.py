"""The interactive API pages, served with their own assets: a centre's intranet is often
offline, and FastAPI's own pages load Swagger UI and ReDoc from a public CDN.

The assets (Swagger UI 5, ReDoc 2 and a favicon) come from the ``fastapi-offline``
wheel, a locked dependency; nothing is downloaded at build or run time. The pages are
on only when ``ONEDOOR_API_DOCS`` turns them on (:meth:`Settings.api_pages`).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from shared.platform.settings import Settings

ASSETS_URL = "/docs/assets"
# The files a page loads; a test asks each of them from a running app.
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
# No badge that sends the document to the public validator.
_SWAGGER_PARAMETERS: dict[str, Any] = {"validatorUrl": None}


def assets_dir() -> Path:
    """The folder of the pages' assets, inside the installed ``fastapi_offline`` wheel."""
    return Path(str(files("fastapi_offline") / "static"))


def api_app(title: str, settings: Settings, **options: Any) -> FastAPI:
    """A FastAPI app whose ``/docs`` and ``/redoc`` pages (when ``settings.api_docs``)
    load only local assets, under :data:`ASSETS_URL`."""
    pages = settings.api_pages()
    app = FastAPI(
        title=title,
        docs_url=None,
        redoc_url=None,
        openapi_url=pages["openapi_url"],
        swagger_ui_parameters=_SWAGGER_PARAMETERS,
        **options,
    )
    if pages["openapi_url"] is not None:
        add_pages(app, pages["openapi_url"], pages["docs_url"], pages["redoc_url"])
    return app


def add_pages(app: FastAPI, openapi_url: str, docs_url: str | None, redoc_url: str | None) -> None:
    """The Swagger UI and ReDoc pages of ``app`` and their assets, all served by ``app``
    (under the request's ``root_path`` behind a proxy, as FastAPI's own pages are)."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="api-docs-assets")
    redirect = app.swagger_ui_oauth2_redirect_url

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    if docs_url is not None:

        @app.get(docs_url, include_in_schema=False)
        async def swagger_ui(request: Request) -> HTMLResponse:
            at = root(request)
            return get_swagger_ui_html(
                openapi_url=f"{at}{openapi_url}",
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=f"{at}{redirect}" if redirect else None,
                swagger_js_url=f"{at}{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{at}{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{at}{ASSETS_URL}/favicon.png",
                swagger_ui_parameters=app.swagger_ui_parameters,
            )

        if redirect:

            @app.get(redirect, include_in_schema=False)
            async def swagger_ui_redirect() -> HTMLResponse:
                return get_swagger_ui_oauth2_redirect_html()

    if redoc_url is not None:

        @app.get(redoc_url, include_in_schema=False)
        async def redoc(request: Request) -> HTMLResponse:
            at = root(request)
            return get_redoc_html(
                openapi_url=f"{at}{openapi_url}",
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{at}{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{at}{ASSETS_URL}/favicon.png",
                with_google_fonts=False,
            )
