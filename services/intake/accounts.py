"""Staff accounts (schema ``intake``): clerks bound to a centre and a window, department
officers of one department, auditors, operators, admins, and centre heads (``head``,
bound to a centre: the dashboard of its centre's cases).

Passwords are hashed with Argon2id (argon2-cffi's defaults); a disabled account cannot
sign in or refresh. Refresh tokens are random, stored as their SHA-256 only, and
revocable. Every function takes a connection whose ``search_path`` is intake's schema.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.contracts.events import utcnow
from shared.platform.db import Connection
from shared.platform.tokens import ROLES

_HASHER = PasswordHasher()  # Argon2id, RFC 9106's second recommended parameters
# Verified against when the account does not exist, so an unknown name costs the same.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))
MIN_PASSWORD = 12


class AccountError(ValueError):
    """An account that cannot be created or changed as asked."""


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    role: str
    centre_id: str | None
    window_id: str | None
    department: str | None
    disabled: bool

    def claims(self) -> dict[str, Any]:
        """What its access tokens say."""
        return {
            "sub": self.name,
            "role": self.role,
            "centre": self.centre_id,
            "window": self.window_id,
            "department": self.department,
        }


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    return _HASHER.hash(password)


def password_matches(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches the Argon2id hash (always spends one verification)."""
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def _account(row: Any) -> Account:
    return Account(
        row["name"],
        row["role"],
        row["centre_id"],
        row["window_id"],
        row["department"],
        row["disabled"],
    )


def check_binding(
    role: str, centre_id: str | None, window_id: str | None, department: str | None
) -> None:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if (role == "clerk") != bool(centre_id and window_id):
        raise AccountError("a clerk, and only a clerk, has a centre and a window")
    if (role == "department_officer") != bool(department):
        raise AccountError("a department officer, and only one, has a department")
    if role == "head" and not (centre_id and not window_id):
        raise AccountError("a centre head has a centre and no window")


async def create(
    conn: Connection,
    name: str,
    role: str,
    password: str,
    *,
    centre_id: str | None = None,
    window_id: str | None = None,
    department: str | None = None,
) -> Account:
    check_binding(role, centre_id, window_id, department)
    hashed = hash_password(password)
    row = await conn.fetchrow(
        """INSERT INTO accounts (name, role, centre_id, window_id, department, password_hash)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING RETURNING *""",
        name,
        role,
        centre_id,
        window_id,
        department,
        hashed,
    )
    if row is None:
        raise AccountError(f"an account {name!r} exists already")
    return _account(row)


async def get(conn: Connection, name: str) -> Account | None:
    account, _ = await stored_hash(conn, name)
    return account


async def listing(conn: Connection) -> list[Account]:
    return [_account(r) for r in await conn.fetch("SELECT * FROM accounts ORDER BY name")]


async def set_disabled(conn: Connection, name: str, disabled: bool = True) -> None:
    """Disable (or enable) an account; disabling also revokes its refresh tokens."""
    async with conn.transaction():
        done = await conn.execute(
            "UPDATE accounts SET disabled = $2, updated_at = now() WHERE name = $1",
            name,
            disabled,
        )
        if done == "UPDATE 0":
            raise AccountError(f"no account {name!r}")
        if disabled:
            await revoke_all(conn, name)


async def reset_password(conn: Connection, name: str, password: str) -> None:
    """A new password; the account's refresh tokens are revoked."""
    hashed = hash_password(password)
    async with conn.transaction():
        done = await conn.execute(
            "UPDATE accounts SET password_hash = $2, updated_at = now() WHERE name = $1",
            name,
            hashed,
        )
        if done == "UPDATE 0":
            raise AccountError(f"no account {name!r}")
        await revoke_all(conn, name)


async def stored_hash(conn: Connection, name: str) -> tuple[Account | None, str | None]:
    """The account (None when unknown) and its password hash, for a sign-in."""
    row = await conn.fetchrow("SELECT * FROM accounts WHERE name = $1", name)
    if row is None:
        return None, None
    return _account(row), row["password_hash"]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def issue_refresh(conn: Connection, account: str, ttl_s: int) -> str:
    token = secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO refresh_tokens (token_hash, account, expires_at) VALUES ($1, $2, $3)",
        _digest(token),
        account,
        utcnow() + timedelta(seconds=ttl_s),
    )
    return token


async def use_refresh(conn: Connection, token: str) -> Account | None:
    """Spend a refresh token (it is revoked: refresh tokens rotate); its account when it
    was live and the account is enabled, else None."""
    row = await conn.fetchrow(
        """UPDATE refresh_tokens SET revoked_at = now()
           WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()
           RETURNING account""",
        _digest(token),
    )
    if row is None:
        return None
    account = await get(conn, row["account"])
    return None if account is None or account.disabled else account


async def revoke(conn: Connection, token: str) -> bool:
    done = await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL",
        _digest(token),
    )
    return done != "UPDATE 0"


async def revoke_all(conn: Connection, name: str) -> None:
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE account = $1 AND revoked_at IS NULL",
        name,
    )
