"""Staff access tokens: JWTs signed with Ed25519 (``alg: EdDSA``), through PyNaCl.

Intake signs them (``POST /auth/token``) with the private key in
``Settings.token_key_path()``; intake and the audit verify them with the public half
(``Settings.token_public_key_path()``). The key file holds the 32-byte seed in hex, mode
0600; it is never logged. :class:`TokenVerifier` caches a verified token's claims until
it expires, so a busy window's requests cost a dictionary look-up, not an Ed25519
verification each.

Two more kinds of token verify here: a citizen's (role ``citizen``, signed by intake with
the same key, naming the one case it may read: every staff endpoint answers it 403), and,
when an OpenID Connect issuer is configured (:mod:`shared.platform.oidc`), that issuer's
staff tokens. Intake's own tokens carry exactly intake's header (no ``kid``); any other
header is the issuer's.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from shared.platform.oidc import OidcError, OidcVerifier
from shared.platform.secret_files import shared_mode

ISSUER = "onedoor-intake"
ROLES = ("clerk", "department_officer", "auditor", "operator", "admin", "head")  # head: of a centre
CITIZEN = "citizen"  # never a staff role: only intake's citizen sign-in issues it
_HEADER = b'{"alg":"EdDSA","typ":"JWT"}'


class TokenError(Exception):
    """The token is missing, malformed, tampered with, signed by another key or expired."""


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(data: bytes) -> bytes:
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


_HEADER_B64 = _b64(_HEADER)


@dataclass(frozen=True, slots=True)
class Claims:
    """Who a verified token speaks for."""

    sub: str  # the account name
    role: str
    exp: int
    centre: str | None = None
    window: str | None = None
    department: str | None = None
    case: str | None = None  # a citizen's token: the one case (its id) it may read

    def may(self, *roles: str) -> bool:
        return self.role in roles


def generate_key(path: Path) -> bool:
    """Create the token signing key at ``path`` (mode 0600) and its public half beside it
    (``.pub``); False when it exists already (it is never overwritten)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write(seed.hex() + "\n")
    public = SigningKey(seed).verify_key.encode().hex()
    path.with_suffix(".pub").write_text(public + "\n")
    return True


def load_signing_key(path: Path) -> SigningKey:
    """The private key; refuses a file others may read."""
    mode = shared_mode(path)
    if mode is not None:
        raise PermissionError(f"{path} is mode {mode:o}: the token signing key must be 0600")
    try:
        return SigningKey(bytes.fromhex(path.read_text().strip()))
    except ValueError:
        raise ValueError(f"{path} does not hold a hex Ed25519 seed") from None


def load_verify_key(path: Path) -> VerifyKey:
    return VerifyKey(bytes.fromhex(path.read_text().strip()))


class TokenIssuer:
    """Signs access tokens with the private key."""

    def __init__(self, key: SigningKey, ttl_s: int) -> None:
        self._key = key
        self.ttl_s = ttl_s

    @property
    def verify_key(self) -> VerifyKey:
        return self._key.verify_key

    def issue(
        self, claims: dict[str, Any], *, now: float | None = None, ttl_s: int | None = None
    ) -> str:
        """A signed token with these claims, valid ``ttl_s`` (default: the issuer's)."""
        issued = int(time.time() if now is None else now)
        body = {
            **{k: v for k, v in claims.items() if v is not None},
            "iss": ISSUER,
            "iat": issued,
            "exp": issued + (self.ttl_s if ttl_s is None else ttl_s),
            "jti": secrets.token_hex(8),
        }
        payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        signing_input = _HEADER_B64 + b"." + payload
        signature = self._key.sign(signing_input).signature
        return (signing_input + b"." + _b64(signature)).decode("ascii")


class TokenVerifier:
    """Verifies access tokens with the public key; caches good ones until they expire."""

    def __init__(
        self,
        key: VerifyKey | None,
        *,
        cache_size: int = 20_000,
        oidc: OidcVerifier | None = None,
    ) -> None:
        self._key = key
        self.oidc = oidc
        self._cache: dict[str, Claims] = {}
        self._cache_size = cache_size

    def verify(self, token: str, *, now: float | None = None) -> Claims:
        moment = time.time() if now is None else now
        cached = self._cache.get(token)
        if cached is not None:
            if cached.exp > moment:
                return cached
            del self._cache[token]
            raise TokenError("the token has expired")
        claims = self._check(token, moment)
        if len(self._cache) >= self._cache_size:
            self._cache = {t: c for t, c in self._cache.items() if c.exp > moment}
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
        self._cache[token] = claims
        return claims

    def _check(self, token: str, moment: float) -> Claims:
        parts = token.encode("ascii", "replace").split(b".")
        if len(parts) == 3 and parts[0] != _HEADER_B64 and self.oidc is not None:
            return self._check_oidc(self.oidc, token, moment)
        if self._key is None:
            raise TokenError("no token key is configured")
        if len(parts) != 3 or parts[0] != _HEADER_B64:
            raise TokenError("not an EdDSA JWT")
        try:
            signature = _unb64(parts[2])
            self._key.verify(parts[0] + b"." + parts[1], signature)
            body = json.loads(_unb64(parts[1]))
        except (BadSignatureError, binascii.Error, ValueError) as exc:
            raise TokenError("bad token signature") from exc
        if not isinstance(body, dict) or body.get("iss") != ISSUER:
            raise TokenError("not one of intake's tokens")
        exp, role, sub = body.get("exp"), body.get("role"), body.get("sub")
        if not isinstance(exp, int) or exp <= moment:
            raise TokenError("the token has expired")
        case = body.get("case")
        known = role in ROLES or (role == CITIZEN and isinstance(case, str))
        if not known or not isinstance(role, str) or not isinstance(sub, str):
            raise TokenError("the token names no known role")
        return Claims(
            sub=sub,
            role=role,
            exp=exp,
            centre=body.get("centre"),
            window=body.get("window"),
            department=body.get("department"),
            case=case if role == CITIZEN else None,
        )

    @staticmethod
    def _check_oidc(oidc: OidcVerifier, token: str, moment: float) -> Claims:
        try:
            who = oidc.verify(token, now=moment)
        except OidcError as exc:
            raise TokenError(str(exc)) from exc
        return Claims(
            sub=who.sub,
            role=who.role,
            exp=who.exp,
            centre=who.centre,
            window=who.window,
            department=who.department,
        )


def bearer(value: str | bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header value, or None."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    scheme, _, token = text.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


Refusal = tuple[int, str]  # status (401 or 403) and why, with no personal data


def decide(
    verifier: TokenVerifier, authorization: str | bytes | None, roles: tuple[str, ...]
) -> Claims | Refusal:
    """Who the request speaks for, when it may: a verified token of one of ``roles``;
    else 401 (no or bad token) or 403 (a good token of another role)."""
    token = bearer(authorization)
    if token is None:
        return 401, "sign in first: Authorization: Bearer <access token>"
    try:
        claims = verifier.verify(token)
    except TokenError as exc:
        return 401, str(exc)
    if claims.role not in roles:
        if not claims.role:
            return 403, "the token grants none of onedoor's roles"
        return 403, f"a {claims.role} may not do this"
    return claims
