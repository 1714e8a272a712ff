"""Staff tokens from an external OpenID Connect issuer (issue 16 item 1), beside intake's own.

Configured by ``Settings.oidc_issuer`` with the issuer's key set (``oidc_jwks_url`` or
``oidc_jwks_file``) and ``oidc_audience``. A token is accepted when it is signed by a key
of that set (RS256, ES256 or EdDSA; never ``none`` or a shared-secret HS*), names that
issuer and audience, and is within its ``exp``/``nbf`` (with ``oidc_leeway_s``). Its roles
come from the configured claim (``roles``, or a dotted path such as
``realm_access.roles``), mapped to onedoor's roles: a token whose roles map to none is a
good token with no role, refused with 403 by every endpoint.

The key set is cached. A token signed by a key the set does not hold makes it re-read,
at most once per ``oidc_jwks_min_refresh_s`` (a stream of forged key ids cannot make us
hammer the issuer), and a set older than ``oidc_jwks_max_age_s`` is re-read too. A URL is
fetched in a background thread, never on the event loop that serves the windows: the
token that asked is refused (401, "retry") and the next one after the fetch verifies. A
file is re-read at once (it is local and small).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import structlog
from jwt import PyJWK

from shared.platform.settings import ConfigError, Settings

log = structlog.get_logger("platform.oidc")

ALGORITHMS = ("RS256", "ES256", "EdDSA")
STAFF_ROLES = ("clerk", "department_officer", "auditor", "operator", "admin", "head")


class OidcError(Exception):
    """The token is not a good token of the configured issuer (answered with 401)."""


class OidcConfigError(ConfigError):
    """The OIDC settings are incomplete: the message names the setting to add."""


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    """Who a verified OIDC token speaks for, in onedoor's words."""

    sub: str
    role: str  # "" when none of its roles maps to one of onedoor's
    exp: int
    centre: str | None = None
    window: str | None = None
    department: str | None = None


def claim(body: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted claim path (``realm_access.roles``), or None."""
    value: Any = body
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def map_role(granted: Any, role_map: Mapping[str, str]) -> str:
    """onedoor's role for the issuer's roles (a list, or one space-separated string):
    each is translated through ``role_map`` (unmapped names stand for themselves), and the
    first of onedoor's roles, in :data:`STAFF_ROLES` order, that one of them names wins.
    "" when none does: the token then grants nothing."""
    if isinstance(granted, str):
        names = granted.split()
    elif isinstance(granted, list):
        names = [n for n in granted if isinstance(n, str)]
    else:
        return ""
    mapped = {role_map.get(name, name) for name in names}
    return next((role for role in STAFF_ROLES if role in mapped), "")


class KeySet:
    """The issuer's public keys by key id, re-read on an unknown key id (rate limited)."""

    def __init__(
        self,
        fetch: Callable[[], bytes],
        *,
        in_background: bool,
        min_refresh_s: float,
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._in_background = in_background
        self._min_refresh_s = min_refresh_s
        self._max_age_s = max_age_s
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._loaded_at: float | None = None
        self._tried_at: float | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.fetches = 0  # how often the set was read (health, tests)

    def refresh(self) -> bool:
        """Read the key set now (blocking); keep the old keys when that fails."""
        with self._lock:
            self._tried_at = self._clock()
        try:
            keys = parse_jwks(self._fetch())
        except (OSError, httpx.HTTPError, ValueError, TypeError, jwt.PyJWTError) as exc:
            log.warning("oidc key set not read", error=f"{type(exc).__name__}: {exc}")
            return False
        with self._lock:
            self._keys = keys
            self._loaded_at = self._clock()
            self.fetches += 1
        log.info("oidc key set read", keys=sorted(keys))
        return True

    def get(self, kid: str | None) -> PyJWK | None:
        """The key for ``kid`` (a token without one may use a set of exactly one key)."""
        now = self._clock()
        stale = self._loaded_at is None or now - self._loaded_at > self._max_age_s
        key = self._lookup(kid)
        if key is None or stale:
            self._maybe_refresh(now)
            key = self._lookup(kid)
        return key

    def _lookup(self, kid: str | None) -> PyJWK | None:
        keys = self._keys
        if kid is None:
            return next(iter(keys.values())) if len(keys) == 1 else None
        return keys.get(kid)

    def _maybe_refresh(self, now: float) -> None:
        with self._lock:
            if self._tried_at is not None and now - self._tried_at < self._min_refresh_s:
                return
            if self._thread is not None and self._thread.is_alive():
                return
            self._tried_at = now
            if self._in_background:
                self._thread = threading.Thread(target=self.refresh, name="oidc-jwks", daemon=True)
                self._thread.start()
                return
        self.refresh()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background read in flight (tests, start-up)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)


def parse_jwks(raw: bytes) -> dict[str, PyJWK]:
    """The usable signature keys of a JWKS document, by key id (keys for encryption or of
    algorithms we do not accept are left out)."""
    document = json.loads(raw)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise TypeError("a JWKS document is an object with a 'keys' list")
    keys: dict[str, PyJWK] = {}
    for index, entry in enumerate(document["keys"]):
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("alg") is not None and entry["alg"] not in ALGORITHMS:
            continue
        try:
            key = PyJWK(entry)
        except jwt.PyJWTError:
            continue  # a key type this library cannot use: not ours to accept
        keys[str(entry.get("kid", f"#{index}"))] = key
    return keys


def _url_fetcher(url: str, timeout_s: float) -> Callable[[], bytes]:
    def fetch() -> bytes:
        response = httpx.get(url, timeout=timeout_s, follow_redirects=False)
        response.raise_for_status()
        return response.content

    return fetch


def _file_fetcher(path: Path) -> Callable[[], bytes]:
    return path.read_bytes


@dataclass
class OidcVerifier:
    """Verifies the configured issuer's tokens and maps them to onedoor's roles."""

    issuer: str
    audience: str
    keys: KeySet
    roles_claim: str = "roles"
    role_map: Mapping[str, str] = field(default_factory=dict)
    subject_claim: str = "sub"
    centre_claim: str = "centre"
    window_claim: str = "window"
    department_claim: str = "department"
    leeway_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcVerifier | None:
        """None when no issuer is configured; ValueError naming the setting when the
        configuration is incomplete."""
        if not settings.oidc_issuer:
            return None
        if not settings.oidc_audience:
            raise OidcConfigError("ONEDOOR_OIDC_ISSUER is set: set ONEDOOR_OIDC_AUDIENCE too")
        if bool(settings.oidc_jwks_url) == bool(settings.oidc_jwks_file):
            raise OidcConfigError(
                "ONEDOOR_OIDC_ISSUER is set: set one of ONEDOOR_OIDC_JWKS_URL "
                "or ONEDOOR_OIDC_JWKS_FILE"
            )
        if settings.oidc_jwks_url:
            fetch = _url_fetcher(settings.oidc_jwks_url, settings.oidc_jwks_timeout_s)
        else:
            assert settings.oidc_jwks_file is not None
            fetch = _file_fetcher(settings.oidc_jwks_file)
        keys = KeySet(
            fetch,
            in_background=bool(settings.oidc_jwks_url),
            min_refresh_s=settings.oidc_jwks_min_refresh_s,
            max_age_s=settings.oidc_jwks_max_age_s,
        )
        return cls(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            keys=keys,
            roles_claim=settings.oidc_roles_claim,
            role_map=dict(settings.oidc_role_map),
            subject_claim=settings.oidc_subject_claim,
            centre_claim=settings.oidc_centre_claim,
            window_claim=settings.oidc_window_claim,
            department_claim=settings.oidc_department_claim,
            leeway_s=settings.oidc_leeway_s,
        )

    def verify(self, token: str, *, now: float | None = None) -> OidcIdentity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise OidcError("not a JWT") from exc
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise OidcError(f"the token's algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        key = self.keys.get(kid if isinstance(kid, str) else None)
        if key is None:
            raise OidcError("the token's signing key is not in the issuer's key set (retry)")
        options: dict[str, Any] = {"require": ["exp", "iss", "aud"]}
        if now is not None:
            # PyJWT compares with its own clock; a given moment shifts the leeway instead.
            options["verify_exp"] = options["verify_nbf"] = options["verify_iat"] = False
        try:
            body = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.PyJWTError as exc:
            raise OidcError(f"bad token: {exc}") from exc
        if now is not None:
            _check_times(body, now, self.leeway_s)
        subject = claim(body, self.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise OidcError(f"the token has no {self.subject_claim!r} claim")
        exp = body["exp"]
        if not isinstance(exp, int):
            raise OidcError("the token's exp is not an integer")

        def text(path: str) -> str | None:
            value = claim(body, path)
            return value if isinstance(value, str) and value else None

        return OidcIdentity(
            sub=subject,
            role=map_role(claim(body, self.roles_claim), self.role_map),
            exp=exp,
            centre=text(self.centre_claim),
            window=text(self.window_claim),
            department=text(self.department_claim),
        )


def _check_times(body: Mapping[str, Any], now: float, leeway: float) -> None:
    exp, nbf = body.get("exp"), body.get("nbf")
    if not isinstance(exp, int | float) or exp <= now - leeway:
        raise OidcError("bad token: Signature has expired")
    if isinstance(nbf, int | float) and nbf > now + leeway:
        raise OidcError("bad token: The token is not yet valid (nbf)")


async def load(settings: Settings) -> OidcVerifier | None:
    """The configured issuer's verifier with its key set read once (in a thread, off the
    event loop), or None when no issuer is configured. A key set that cannot be read yet
    is logged and read again when the first token asks for it: the service still starts
    (its own tokens keep working)."""
    verifier = OidcVerifier.from_settings(settings)
    if verifier is not None:
        await asyncio.to_thread(verifier.keys.refresh)
        log.info("oidc issuer accepted", issuer=verifier.issuer, audience=verifier.audience)
    return verifier
