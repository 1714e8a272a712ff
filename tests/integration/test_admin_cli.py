"""``onedoor-admin`` on the real PostgreSQL: accounts made, listed, disabled and given a
new password; the password comes from stdin or a file and is never printed."""

from __future__ import annotations

import asyncio
import io
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.intake import accounts
from services.intake.admin import SCHEMA, main
from shared.platform.db import connect
from shared.platform.settings import Settings, get_settings

pytestmark = pytest.mark.integration

SECRET = "a long enough secret 1"


@pytest.fixture
def admin_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("DATABASE_URL", settings.dsn())
    monkeypatch.setenv("ONEDOOR_KEYS_DIR", str(settings.keys_dir))
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(argv)


async def stored(settings: Settings, name: str) -> tuple[accounts.Account | None, str | None]:
    conn = await connect(settings.dsn(), SCHEMA, name="test")
    try:
        return await accounts.stored_hash(conn, name)
    finally:
        await conn.close()


async def test_accounts_are_managed_without_the_password_ever_printed(
    admin_env: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    argv = ["create", "li.wei", "--role", "clerk", "--centre", "C01", "--window", "W03"]
    # main() runs its own event loop: off this test's loop, in a thread.
    assert await asyncio.to_thread(run, argv, monkeypatch, SECRET + "\n") == 0
    account, hashed = await stored(admin_env, "li.wei")
    assert account is not None
    assert (account.role, account.centre_id, account.window_id) == ("clerk", "C01", "W03")
    assert hashed is not None
    assert accounts.password_matches(hashed, SECRET)
    again = await asyncio.to_thread(run, argv, monkeypatch, SECRET + "\n")
    assert again == 2  # exists already
    bad = ["create", "x.y", "--role", "clerk", "--centre", "C01"]  # no window
    assert await asyncio.to_thread(run, bad, monkeypatch, SECRET + "\n") == 2
    new = tmp_path / "pw"
    new.write_text("another long secret 2\n")
    reset = ["reset-password", "li.wei", "--password-file", str(new)]
    assert await asyncio.to_thread(run, reset, monkeypatch) == 0
    _, hashed = await stored(admin_env, "li.wei")
    assert hashed is not None
    assert accounts.password_matches(hashed, "another long secret 2")
    assert await asyncio.to_thread(run, ["disable", "li.wei"], monkeypatch) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(run, ["list", "--json"], monkeypatch) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "li.wei"
    assert listed[0]["disabled"] is True
    assert "password_hash" not in listed[0]
    assert await asyncio.to_thread(run, ["token-key"], monkeypatch) == 0
    key = admin_env.token_key_path()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    out = capsys.readouterr()
    for secret in (SECRET, "another long secret 2", key.read_text().strip()):
        assert secret not in out.out + out.err
