"""Passwords (Argon2id), access tokens (EdDSA JWT: expiry, tampering, other keys, the
cache), the token key file, the sign-in rate limit and who may do what."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from services.intake.accounts import AccountError, check_binding, hash_password, password_matches
from services.intake.signin import RateLimiter
from shared.platform.tokens import (
    Claims,
    TokenError,
    TokenIssuer,
    TokenVerifier,
    bearer,
    decide,
    generate_key,
    load_signing_key,
)

pytestmark = pytest.mark.unit

CLERK = {"sub": "clerk-1", "role": "clerk", "centre": "C01", "window": "W03"}
NOW = 1_800_000_000.0


def test_passwords_are_argon2id_and_only_the_right_one_matches() -> None:
    stored = hash_password("a long enough secret")
    assert stored.startswith("$argon2id$")
    assert "a long enough secret" not in stored
    assert password_matches(stored, "a long enough secret")
    assert not password_matches(stored, "a long enough secreT")
    assert not password_matches(None, "a long enough secret")  # unknown account
    assert not password_matches("not a hash", "a long enough secret")
    assert hash_password("a long enough secret") != stored  # salted
    with pytest.raises(AccountError, match="12 characters"):
        hash_password("short")


def test_roles_are_bound_as_declared() -> None:
    check_binding("clerk", "C01", "W01", None)
    check_binding("department_officer", None, None, "social_security")
    check_binding("auditor", None, None, None)
    for bad in [
        ("clerk", "C01", None, None),
        ("auditor", "C01", "W01", None),
        ("department_officer", None, None, None),
        ("root", None, None, None),
    ]:
        with pytest.raises(AccountError):
            check_binding(*bad)


def test_a_token_verifies_until_it_expires() -> None:
    key = SigningKey.generate()
    token = TokenIssuer(key, 900).issue(CLERK, now=NOW)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "EdDSA", "typ": "JWT"}
    claims = TokenVerifier(key.verify_key).verify(token, now=NOW + 899)
    assert claims == Claims(
        sub="clerk-1", role="clerk", exp=int(NOW) + 900, centre="C01", window="W03"
    )
    with pytest.raises(TokenError, match="expired"):
        TokenVerifier(key.verify_key).verify(token, now=NOW + 900)


def test_a_cached_token_still_expires() -> None:
    key = SigningKey.generate()
    verifier = TokenVerifier(key.verify_key)
    token = TokenIssuer(key, 60).issue(CLERK, now=NOW)
    assert verifier.verify(token, now=NOW) is verifier.verify(token, now=NOW + 1)  # cached
    with pytest.raises(TokenError, match="expired"):
        verifier.verify(token, now=NOW + 61)


def _swap_payload(token: str, change: dict[str, object]) -> str:
    head, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps(body | change).encode()).rstrip(b"=")
    return f"{head}.{forged.decode()}.{signature}"


def test_tampered_forged_and_malformed_tokens_are_refused() -> None:
    key = SigningKey.generate()
    verifier = TokenVerifier(key.verify_key)
    token = TokenIssuer(key, 900).issue(CLERK, now=NOW)
    none_alg = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    bad = {
        "another role": _swap_payload(token, {"role": "admin"}),
        "another centre": _swap_payload(token, {"centre": "C02"}),
        "later expiry": _swap_payload(token, {"exp": int(NOW) + 10**6}),
        "another key": TokenIssuer(SigningKey.generate(), 900).issue(CLERK, now=NOW),
        "alg none": none_alg + "." + token.split(".")[1] + ".",
        "no signature": token.rsplit(".", 1)[0] + ".",
        "garbage": "garbage",
        "two parts": "a.b",
        "not ascii": "é.é.é",
    }
    for name, forged in bad.items():
        with pytest.raises(TokenError):
            verifier.verify(forged, now=NOW)
        assert forged not in verifier._cache, name
    with pytest.raises(TokenError):
        TokenVerifier(None).verify(token, now=NOW)  # no key configured: nothing verifies


def test_decide_says_401_for_no_or_bad_tokens_and_403_for_another_role() -> None:
    key = SigningKey.generate()
    verifier = TokenVerifier(key.verify_key)
    clerk = TokenIssuer(key, 900).issue(CLERK)
    assert decide(verifier, None, ("clerk",))[0] == 401  # type: ignore[index]
    assert decide(verifier, "Basic abc", ("clerk",))[0] == 401  # type: ignore[index]
    assert decide(verifier, "Bearer nope", ("clerk",))[0] == 401  # type: ignore[index]
    assert decide(verifier, f"Bearer {clerk}", ("auditor", "admin"))[0] == 403  # type: ignore[index]
    assert isinstance(decide(verifier, f"bearer {clerk}".encode(), ("clerk",)), Claims)
    assert bearer("Bearer ") is None


def test_the_key_file_is_created_once_mode_0600_and_a_readable_one_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens" / "access-token.key"
    assert generate_key(path)
    first = path.read_text()
    assert not generate_key(path)  # never overwritten
    assert path.read_text() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_signing_key(path)
    assert path.with_suffix(".pub").read_text().strip() == key.verify_key.encode().hex()
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="0600"):
        load_signing_key(path)


def test_the_rate_limit_counts_failures_in_a_sliding_window() -> None:
    limiter = RateLimiter(3, 60)
    for n in range(3):
        assert limiter.retry_after("clerk-1", now=100 + n) == 0
        limiter.failed("clerk-1", now=100 + n)
    assert limiter.retry_after("clerk-1", now=103) == 57  # the first failure leaves at 160
    assert limiter.retry_after("clerk-2", now=103) == 0  # per key
    assert limiter.retry_after("clerk-1", now=160.5) == 0
    limiter.failed("clerk-1", now=170)
    limiter.forget("clerk-1")
    assert limiter.retry_after("clerk-1", now=170) == 0


def test_the_rate_limit_forgets_idle_keys_when_full() -> None:
    limiter = RateLimiter(1, 10, max_keys=2)
    limiter.failed("a", now=0)
    limiter.failed("b", now=0)
    limiter.failed("c", now=20)  # a and b are past their window: dropped
    assert set(limiter._failures) == {"c"}
