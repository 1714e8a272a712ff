"""What the window page and the citizen's page share: templates, the security headers,
CSRF, cookies, the page language, and in-process calls to intake's own JSON API.

Safety, in one place:

- Templates autoescape everything (Jinja2, ``select_autoescape`` on ``.html``); the
  script never writes HTML (no ``innerHTML``), so what a user typed is shown as text.
- Every page answer carries a Content-Security-Policy with no inline script or style
  (``default-src 'self'``, ``frame-ancestors 'none'``), ``X-Frame-Options: DENY``,
  ``nosniff``, ``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store``.
- CSRF: a random token in an HttpOnly ``SameSite=Strict`` cookie, repeated in a hidden
  field of every form that posts (double submit); a post whose field does not match the
  cookie, or whose ``Origin`` is another site's, is refused with 403. The session
  cookies are ``SameSite=Strict`` too, so a cross-site post carries none of them.
- Tokens live in HttpOnly cookies the script cannot read, never in a URL; the pages
  take no personal data in a URL (lookups are posted; a case page is named by its id).
"""

from __future__ import annotations

import hmac
import secrets
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.intake.pages import i18n

HERE = Path(__file__).parent
CSRF_COOKIE = "od_csrf"
LANG_COOKIE = "od_lang"
MAX_FORM_BYTES = 64 * 1024

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
STATIC = {  # the only files /static/pages/ serves (and chart.js): nothing from a CDN
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
}

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"], default=True),
    undefined=StrictUndefined,  # a name a template lacks is an error, not an empty string
    trim_blocks=True,
    lstrip_blocks=True,
)


class FormError(ValueError):
    """A posted body that is not a small URL-encoded form."""


def secure(request: Request) -> bool:
    """Cookies are marked Secure when the page was reached over HTTPS (directly or
    through a proxy that says so)."""
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto == "https"


def set_cookie(
    response: Response, request: Request, name: str, value: str, *, path: str, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )


def clear_cookie(response: Response, request: Request, name: str, *, path: str) -> None:
    response.delete_cookie(
        name, path=path, httponly=True, samesite="strict", secure=secure(request)
    )


class Page:
    """One request's page context: its language, its CSRF token, cookies to set."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.lang = i18n.choose(
            request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")
        )
        existing = request.cookies.get(CSRF_COOKIE)
        self._new_csrf = existing is None or len(existing) < 32
        self.csrf = secrets.token_urlsafe(32) if self._new_csrf else str(existing)
        self.cookies: list[tuple[str, str, str, int]] = []  # name, value, path, max-age
        self.cleared: list[tuple[str, str]] = []

    def t(self, key: str) -> str:
        return i18n.text(key, self.lang)

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        body = templates.get_template(template).render(
            t=self.t,
            lang=self.lang,
            csrf=self.csrf,
            date=lambda v: i18n.local_date(v, self.lang),
            time=lambda v: i18n.local_time(v, self.lang),
            here=self.request.url.path,
            **context,
        )
        return self.finish(HTMLResponse(body, status_code=status))

    def redirect(self, to: str) -> Response:
        return self.finish(RedirectResponse(to, status_code=303))

    def finish(self, response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        if self._new_csrf:
            set_cookie(response, self.request, CSRF_COOKIE, self.csrf, path="/", max_age=86400)
        for name, value, path, max_age in self.cookies:
            set_cookie(response, self.request, name, value, path=path, max_age=max_age)
        for name, path in self.cleared:
            clear_cookie(response, self.request, name, path=path)
        return response

    async def posted(self) -> dict[str, str]:
        """The posted form, once its CSRF token and origin are checked.

        Raises:
            FormError: not a small URL-encoded form, a foreign Origin, or a CSRF token
                that does not match this browser's cookie.
        """
        origin = self.request.headers.get("origin")
        if origin is not None and origin != "null" and origin != _own_origin(self.request):
            raise FormError("cross-site post")
        body = await self.request.body()
        if len(body) > MAX_FORM_BYTES:
            raise FormError("form too large")
        try:
            pairs = urllib.parse.parse_qsl(
                body.decode("utf-8"),
                keep_blank_values=True,
                max_num_fields=200,
                strict_parsing=False,
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise FormError("not a form") from exc
        form: dict[str, str] = {}
        for key, value in pairs:
            form.setdefault(key, value)
        cookie = self.request.cookies.get(CSRF_COOKIE, "")
        token = form.pop("csrf", "")
        if self._new_csrf or not hmac.compare_digest(cookie.encode(), token.encode()):
            raise FormError("csrf token mismatch")
        return form

    def refuse(self) -> Response:
        return self.render("message.html", status=403, message=self.t("forbidden"))


def _own_origin(request: Request) -> str:
    host = request.headers.get("host", "")
    scheme = request.headers.get("x-forwarded-proto", request.url.scheme)
    return f"{scheme}://{host}"


class Api:
    """Intake's own JSON API, called in-process (no network hop): the pages post what the
    clerk or the citizen typed to the very endpoints a terminal uses, and show the
    API's own answers and words (its 422 details beside the fields)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def call(
        self,
        request: Request,
        method: str,
        path: str,
        *,
        json: Any = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        client = request.client
        transport = httpx.ASGITransport(
            app=self.app,
            # The browser's address, so the API's rate limits count the right client.
            client=(client.host, client.port) if client else ("127.0.0.1", 0),
        )
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
            return await http.request(method, path, json=json, headers=sent)


def page_route(app: FastAPI, method: str, path: str, endpoint: Callable[..., Any]) -> None:
    """A page's route: not part of the API's OpenAPI document."""
    app.add_api_route(path, endpoint, methods=[method], include_in_schema=False)


def static_file(name: str) -> Response:
    kind = STATIC.get(name)
    if kind is None:
        return Response(status_code=404)
    body = (HERE / "static" / name).read_bytes()
    response = Response(body, media_type=kind)
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-cache"
    return response


def script_file(body: bytes | None) -> Response:
    """A script read at start (Chart.js); 404 when it was missing."""
    if body is None:
        return Response(status_code=404)
    response = Response(body, media_type="text/javascript; charset=utf-8")
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


def details(answer: httpx.Response) -> list[dict[str, Any]]:
    """The API's ``detail`` as a list of ``{loc, msg, type}`` (a string detail is one
    entry with no location)."""
    try:
        body = answer.json()
    except ValueError:
        return [{"loc": [], "msg": f"HTTP {answer.status_code}", "type": "http"}]
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        return [d for d in detail if isinstance(d, dict)]
    return [{"loc": [], "msg": str(detail or f"HTTP {answer.status_code}"), "type": "http"}]


def by_field(errors: list[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """Errors keyed by the form field they concern (``applicant.name``, ``form.x``,
    ``community_code``), and those that concern no single field."""
    fields: dict[str, str] = {}
    general: list[str] = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", [])]
        if loc and loc[0] == "body":
            loc = loc[1:]
        key = ".".join(loc)
        message = str(error.get("msg", ""))
        if key and key not in ("form", "applicant") and not key.startswith("header"):
            fields.setdefault(key, message)
        else:
            general.append(f"{key}: {message}" if key else message)
    return fields, general
