"""``onedoor-admin`` on the real PostgreSQL: accounts made, listed, disabled and given a
new password; the password comes from stdin or a file and is never printed."""

from __future__ import annotations

import asyncio
import io
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from services.intake import accounts, subject_keys
from services.intake.admin import SCHEMA, main
from shared.contracts.events import PersonErased, parse_event
from shared.contracts.sealing import SealError
from shared.department.keys import DataKeys
from shared.platform.db import connect
from shared.platform.privacy_keys import load_centre_secret
from shared.platform.settings import Settings, get_settings
from tests.support.builders import applicant

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


async def test_erase_deletes_the_persons_key_and_queues_a_signed_erasure(
    admin_env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After ``erase`` the person's data key is gone: a department can no longer open any
    sealed copy of their fields; a PersonErased (pseudonym only) waits in intake's outbox,
    signed by intake; a second person's key is untouched."""
    secret = load_centre_secret(admin_env.privacy_key_path())
    person, other = applicant(11), applicant(12)
    admin = ["create", "root.admin", "--role", "admin"]
    assert await asyncio.to_thread(run, admin, monkeypatch, SECRET + "\n") == 0
    conn = await connect(admin_env.dsn(), SCHEMA, name="test")
    try:
        refs = [secret.subject_ref(p.id_number) for p in (person, other)]
        keys = await subject_keys.data_keys(conn, secret, refs)
        case = uuid4()
        token = subject_keys.sealed_applicant(person, refs[0], keys[refs[0]], case)
        department = DataKeys(secret, 0)
        await department.prefetch(conn, [token.ref])
        assert department.open(token, case).id_number == person.id_number
        capsys.readouterr()
        argv = ["erase", "--by", "root.admin", "--reason", "request 2026-77"]
        assert await asyncio.to_thread(run, argv, monkeypatch, person.id_number + "\n") == 0
        printed = capsys.readouterr()
        assert refs[0] in printed.out
        assert person.id_number not in printed.out + printed.err
        left = await conn.fetch("SELECT ref FROM subject_keys ORDER BY ref")
        assert [r["ref"] for r in left] == [refs[1]]
        after = DataKeys(secret, 0)
        await after.prefetch(conn, [token.ref])
        with pytest.raises(SealError):
            after.open(token, case)
        row = await conn.fetchrow(
            "SELECT topic, value, headers FROM outbox WHERE topic LIKE '%privacy.erasures'"
        )
        assert row is not None
        assert person.id_number.encode() not in bytes(row["value"])
        erased = parse_event(bytes(row["value"]))
        assert isinstance(erased, PersonErased)
        assert (erased.subject_ref, erased.key_ids) == (refs[0], (keys[refs[0]][0],))
        assert erased.erased_by == "root.admin"
        assert "onedoor-signer" in json.dumps(row["headers"], default=str)
        # Not an admin, no reason, not an ID: refused with the fix, nothing erased.
        clerk = ["erase", "--by", "nobody", "--reason", "request 2026-78"]
        assert await asyncio.to_thread(run, clerk, monkeypatch, other.id_number + "\n") == 2
        junk = ["erase", "--by", "root.admin", "--reason", "request 2026-79"]
        assert await asyncio.to_thread(run, junk, monkeypatch, "12345\n") == 2
        assert "neither a valid resident ID" in capsys.readouterr().err
        assert await conn.fetchval("SELECT count(*) FROM subject_keys") == 1
    finally:
        await conn.close()
