"""Tokens of an external OpenID Connect issuer (keys made here, a JWKS file): RS256, ES256
and EdDSA verify; a wrong issuer, audience, an expired token, an unknown key id, a bad
signature, ``alg: none`` or HS256 are refused; roles map from a dotted claim; the key
set is re-read on an unknown key id at most once per interval."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import jwt
import pytest

from shared.platform.oidc import KeySet, OidcConfigError, OidcVerifier, claim, map_role
from shared.platform.settings import Settings
from shared.platform.tokens import Claims, TokenVerifier, decide
from tests.support.oidc import AUDIENCE, ISSUER, Issuer, new_key

pytestmark = pytest.mark.unit


def configured(tmp_path: Path, idp: Issuer, **extra: object) -> OidcVerifier:
    path = tmp_path / "jwks.json"
    path.write_bytes(idp.jwks())
    settings = Settings(
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks_file=path,
        oidc_roles_claim="realm_access.roles",
        oidc_jwks_min_refresh_s=0,
        **extra,  # type: ignore[arg-type]
    )
    verifier = OidcVerifier.from_settings(settings)
    assert verifier is not None
    verifier.keys.refresh()
    return verifier


def bearer(token: str) -> str:
    return f"Bearer {token}"


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_a_token_of_the_issuer_verifies_as_a_clerk(tmp_path: Path, alg: str) -> None:
    idp = Issuer()
    idp.add("k1", alg)
    tokens = TokenVerifier(None, oidc=configured(tmp_path, idp))
    claims = decide(tokens, bearer(idp.token("k1")), ("clerk",))
    assert isinstance(claims, Claims)
    assert (claims.sub, claims.role, claims.centre, claims.window) == (
        "li.wei",
        "clerk",
        "C01",
        "W07",
    )


def test_every_kind_of_bad_token_is_refused_with_401(tmp_path: Path) -> None:
    idp = Issuer()
    idp.add("k1")
    tokens = TokenVerifier(None, oidc=configured(tmp_path, idp))
    stranger = Issuer(issuer="https://evil.example.test")
    stranger.keys = idp.keys
    other_audience = Issuer(audience="another-app")
    other_audience.keys = idp.keys
    ghost = Issuer()
    ghost.add("nope")  # a real key, but not one of the issuer's set
    good = idp.token("k1")
    head, body, signature = good.split(".")
    tampered_body = _b64(_unb64(body).replace(b"li.wei", b"li.wex"))
    unsigned = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x"}, "", algorithm="none")
    shared_secret = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60},
        "secret-long-enough-for-hmac-sha256-xxxx",
        algorithm="HS256",
        headers={"kid": "k1"},
    )
    refused = {
        "wrong issuer": stranger.token("k1"),
        "wrong audience": other_audience.token("k1"),
        "expired": idp.token("k1", lifetime_s=-120),  # beyond the 30 s leeway
        "not yet valid": idp.token("k1", nbf=int(time.time()) + 600),
        "unknown kid": ghost.token("nope"),
        "bad signature": idp.token("k1", key=new_key("RS256")),
        "tampered": f"{head}.{tampered_body}.{signature}",
        "alg none": unsigned,
        "HS256": shared_secret,
        "garbage": "a.b.c",
    }
    answers = {name: decide(tokens, bearer(token), ("clerk",)) for name, token in refused.items()}
    assert {name: a[0] for name, a in answers.items() if isinstance(a, tuple)} == dict.fromkeys(
        refused, 401
    ), answers


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_roles_map_from_the_configured_claim_and_unknown_roles_grant_nothing(
    tmp_path: Path,
) -> None:
    idp = Issuer()
    idp.add("k1", "ES256")
    tokens = TokenVerifier(
        None, oidc=configured(tmp_path, idp, oidc_role_map={"onedoor-audit": "auditor"})
    )
    auditor = decide(tokens, bearer(idp.token("k1", roles=["onedoor-audit"])), ("auditor",))
    assert isinstance(auditor, Claims)
    assert auditor.role == "auditor"
    nobody = decide(tokens, bearer(idp.token("k1", roles=["offline_access"])), ("clerk",))
    assert nobody == (403, "the token grants none of onedoor's roles")
    # The issuer can never make a citizen: that role is intake's alone.
    citizen = decide(tokens, bearer(idp.token("k1", roles=["citizen"])), ("citizen",))
    assert citizen == (403, "the token grants none of onedoor's roles")
    assert map_role("clerk admin", {}) == "clerk"
    assert map_role(None, {}) == ""
    assert claim({"a": {"b": [1]}}, "a.b") == [1]
    assert claim({"a": 1}, "a.b") is None


def test_an_unknown_kid_rereads_the_key_set_at_most_once_per_interval(tmp_path: Path) -> None:
    idp = Issuer()
    idp.add("k1")
    path = tmp_path / "jwks.json"
    path.write_bytes(idp.jwks())
    moment = [1000.0]
    keys = KeySet(
        path.read_bytes,
        in_background=False,
        min_refresh_s=60,
        max_age_s=3600,
        clock=lambda: moment[0],
    )
    keys.refresh()
    assert keys.fetches == 1
    idp.add("k2")  # the issuer rotates: a new key in its set
    path.write_bytes(idp.jwks())
    moment[0] += 10
    assert keys.get("k2") is None  # too soon after the last read
    assert keys.fetches == 1
    moment[0] += 60
    assert keys.get("k2") is not None
    assert keys.fetches == 2
    for _ in range(5):
        assert keys.get("forged") is None
    assert keys.fetches == 2  # a stream of forged key ids reads the set no more often
    moment[0] += 3601
    assert keys.get("k1") is not None  # a stale set is re-read
    assert keys.fetches == 3


def test_the_configuration_must_be_complete(tmp_path: Path) -> None:
    assert OidcVerifier.from_settings(Settings()) is None
    with pytest.raises(OidcConfigError, match="ONEDOOR_OIDC_AUDIENCE"):
        OidcVerifier.from_settings(Settings(oidc_issuer=ISSUER, oidc_jwks_file=tmp_path))
    with pytest.raises(OidcConfigError, match="ONEDOOR_OIDC_JWKS_URL"):
        OidcVerifier.from_settings(Settings(oidc_issuer=ISSUER, oidc_audience=AUDIENCE))


def test_intake_tokens_still_verify_beside_the_issuers(tmp_path: Path) -> None:
    from nacl.signing import SigningKey  # noqa: PLC0415

    from shared.platform.tokens import TokenIssuer  # noqa: PLC0415

    idp = Issuer()
    idp.add("k1")
    own = SigningKey.generate()
    tokens = TokenVerifier(own.verify_key, oidc=configured(tmp_path, idp))
    intake = TokenIssuer(own, 900).issue({"sub": "a-1", "role": "auditor"})
    assert isinstance(decide(tokens, bearer(intake), ("auditor",)), Claims)
    assert isinstance(decide(tokens, bearer(idp.token("k1")), ("clerk",)), Claims)
