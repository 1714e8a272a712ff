"""Who is signed in at a page area: the access and refresh tokens in HttpOnly cookies
scoped to the area's path, the access token renewed with the refresh token when it has
expired, sign-in and sign-out through intake's own API (in-process). The window page
(``/window``, clerks) and the dashboard (``/desk``, auditors, admins and heads) each
keep one."""

from __future__ import annotations

from typing import Any

from services.intake.pages.web import Api, Page, by_field, details
from shared.platform.settings import Settings
from shared.platform.tokens import Claims, TokenVerifier, decide


class Sessions:
    """Sessions of ``roles`` at ``path``, kept in the cookies ``access`` and ``refresh``
    (scoped to ``path``). ``refused``: the message key for a good sign-in of another
    role."""

    def __init__(
        self,
        api: Api,
        settings: Settings,
        verifier: TokenVerifier,
        path: str,
        roles: tuple[str, ...],
        *,
        access: str,
        refresh: str,
        refused: str,
    ) -> None:
        self.api = api
        self.settings = settings
        self.verifier = verifier
        self.path = path
        self.roles = roles
        self.access = access
        self.refresh = refresh
        self.refused = refused

    async def who(self, page: Page) -> tuple[Claims, str] | None:
        """The signed-in person and their access token, renewed with the refresh token
        when it has expired; None (and the cookies cleared) when nobody is signed in."""
        cookies = page.request.cookies
        token = cookies.get(self.access)
        if token:
            claims = decide(self.verifier, f"Bearer {token}", self.roles)
            if isinstance(claims, Claims):
                return claims, token
        refresh = cookies.get(self.refresh)
        if refresh:
            answer = await self.api.call(
                page.request, "POST", "/auth/refresh", json={"refresh_token": refresh}
            )
            if answer.status_code == 200:
                tokens = answer.json()
                claims = decide(self.verifier, f"Bearer {tokens['access_token']}", self.roles)
                if isinstance(claims, Claims):
                    self.keep(page, tokens)
                    return claims, str(tokens["access_token"])
        if token or refresh:
            self.clear(page)
        return None

    def keep(self, page: Page, tokens: dict[str, Any]) -> None:
        page.cookies.append(
            (self.access, str(tokens["access_token"]), self.path, int(tokens["expires_in"]))
        )
        page.cookies.append(
            (
                self.refresh,
                str(tokens["refresh_token"]),
                self.path,
                self.settings.refresh_token_ttl_s,
            )
        )

    def clear(self, page: Page) -> None:
        page.cleared += [(self.access, self.path), (self.refresh, self.path)]

    async def sign_in(
        self, page: Page, form: dict[str, str]
    ) -> tuple[dict[str, str], list[str]] | None:
        """Sign in with the posted form: None when done, else the API's errors, by
        field and general (a good sign-in of another role is revoked and refused)."""
        answer = await self.api.call(
            page.request,
            "POST",
            "/auth/token",
            json={"name": form.get("name", ""), "password": form.get("password", "")},
        )
        if answer.status_code != 200:
            return by_field(details(answer))
        tokens = answer.json()
        if tokens.get("role") not in self.roles:
            await self.api.call(
                page.request,
                "POST",
                "/auth/revoke",
                json={"refresh_token": tokens["refresh_token"]},
            )
            return {}, [page.t(self.refused)]
        self.keep(page, tokens)
        return None

    async def sign_out(self, page: Page) -> None:
        refresh = page.request.cookies.get(self.refresh)
        if refresh:
            await self.api.call(
                page.request, "POST", "/auth/revoke", json={"refresh_token": refresh[:200]}
            )
        self.clear(page)
