"""How a service reaches PostgreSQL: its password from a file, TLS options that reach
asyncpg's connection, the roles' names and password verifiers. A local socket plays
the server's first byte; no database is needed."""

from __future__ import annotations

import asyncio
import base64
import ssl
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from deploy import dbroles
from shared.platform.secret_files import SecretFileError
from shared.platform.settings import Settings, compose_dsn

pytestmark = pytest.mark.unit

SSL_REQUEST = 80877103  # the first message of a client that asks for TLS
STARTUP_V3 = 196608  # the first message of a client that does not


ODD = "s3cret/with:odd@chars"


def password_file(tmp_path: Path, text: str = ODD, mode: int = 0o600) -> Path:
    path = tmp_path / "db.password"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def test_the_password_file_replaces_the_urls_password(tmp_path: Path) -> None:
    settings = Settings(
        database_url="postgresql://onedoor_router:old@db.example:5432/onedoor",  # type: ignore[arg-type]
        database_password_file=password_file(tmp_path),
    )
    parts = urlsplit(settings.dsn())
    assert (parts.username, parts.hostname, parts.port, parts.path) == (
        "onedoor_router",
        "db.example",
        5432,
        "/onedoor",
    )
    assert parts.password == "s3cret%2Fwith%3Aodd%40chars"  # percent-encoded, whole


def test_settings_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://onedoor_intake@db:5432/onedoor")
    monkeypatch.setenv("ONEDOOR_DATABASE_PASSWORD_FILE", str(password_file(tmp_path, "pw")))
    monkeypatch.setenv("ONEDOOR_DATABASE_SSLMODE", "verify-full")
    monkeypatch.setenv("ONEDOOR_DATABASE_SSL_ROOT_CERT", "/etc/onedoor/db-ca.pem")
    dsn = urlsplit(Settings().dsn())
    assert dsn.password == "pw"
    assert parse_qs(dsn.query) == {
        "sslmode": ["verify-full"],
        "sslrootcert": ["/etc/onedoor/db-ca.pem"],
    }


def test_without_options_the_url_is_left_as_it_is() -> None:
    url = "postgresql://postgres@127.0.0.1:25432/onedoor?sslmode=disable"
    assert Settings(database_url=url).dsn() == url  # type: ignore[arg-type]
    assert compose_dsn(url, sslmode="require").endswith("?sslmode=require")


@pytest.mark.parametrize(
    ("mode", "problem"), [(0o644, "others may read it"), (0o604, "others may read it")]
)
def test_a_password_file_others_may_read_is_refused(
    tmp_path: Path, mode: int, problem: str
) -> None:
    path = password_file(tmp_path, "hunter2", mode)
    settings = Settings(database_password_file=path)
    with pytest.raises(SecretFileError, match=problem) as caught:
        settings.dsn()
    assert str(path) in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "chmod 600" in str(caught.value)


def test_a_missing_or_empty_password_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SecretFileError, match=r"cannot read .*nowhere\.password"):
        Settings(database_password_file=tmp_path / "nowhere.password").dsn()
    with pytest.raises(SecretFileError, match="is empty"):
        Settings(database_password_file=password_file(tmp_path, "")).dsn()
    # Not an OSError: start-up's retry loop (which waits for a database coming up) must
    # not wait 30 rounds for a file that will not appear.
    assert not issubclass(SecretFileError, OSError)


@pytest.fixture
async def first_messages() -> AsyncIterator[tuple[int, list[int]]]:
    """A port where a fake server notes the code of each client's first message and
    answers a TLS request with "N" (no TLS here)."""
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, code = struct.unpack("!ii", await reader.readexactly(8))
        seen.append(code)
        if code == SSL_REQUEST:
            writer.write(b"N")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], seen


async def test_sslmode_reaches_asyncpgs_connection(first_messages: tuple[int, list[int]]) -> None:
    port, seen = first_messages
    base = f"postgresql://onedoor_intake:pw@127.0.0.1:{port}/onedoor"
    with pytest.raises(ConnectionError, match="rejected SSL upgrade"):
        await asyncpg.connect(Settings(database_url=base, database_sslmode="require").dsn())  # type: ignore[arg-type]
    assert seen == [SSL_REQUEST]
    seen.clear()
    with pytest.raises((asyncpg.ConnectionDoesNotExistError, ConnectionError)):
        await asyncpg.connect(Settings(database_url=base, database_sslmode="disable").dsn())  # type: ignore[arg-type]
    assert seen == [STARTUP_V3]  # no TLS asked for


async def test_the_root_certificate_reaches_asyncpgs_tls_context(tmp_path: Path) -> None:
    base = "postgresql://onedoor_intake:pw@127.0.0.1:9/onedoor"  # nothing listens on 9
    not_a_ca = tmp_path / "db-ca.pem"
    not_a_ca.write_text("not a certificate\n")
    # asyncpg loads the CA file while it builds the TLS context, before any packet: a
    # file that holds no certificate stops it there. Without the option it looks for
    # libpq's default, ~/.postgresql/root.crt, instead.
    verify = {"database_url": base, "database_sslmode": "verify-full"}
    with pytest.raises(ssl.SSLError):
        await asyncpg.connect(Settings(**verify, database_ssl_root_cert=not_a_ca).dsn())  # type: ignore[arg-type]
    with pytest.raises(asyncpg.ClientConfigurationError, match=r"\.postgresql/root\.crt"):
        await asyncpg.connect(Settings(**verify).dsn())  # type: ignore[arg-type]


def test_role_names_are_derived_from_the_service_or_department() -> None:
    assert dbroles.role_for("social_security") == "onedoor_social_security"
    assert dbroles.role_for("parks") == "onedoor_parks"
    for bad in ("Parks", "parks; DROP ROLE x", "", "x" * 60):
        with pytest.raises(dbroles.ProvisionError):
            dbroles.role_for(bad)


def test_the_scram_verifier_has_postgresqls_form_and_holds_no_password() -> None:
    salt = bytes(range(16))
    verifier = dbroles.scram_verifier("pencil", salt=salt)
    head, keys = verifier.split("$", 1)[1].split("$")
    iterations, salt_b64 = head.split(":")
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    assert (int(iterations), base64.b64decode(salt_b64)) == (4096, salt)
    assert [len(base64.b64decode(k)) for k in keys.split(":")] == [32, 32]
    assert "pencil" not in verifier
    assert dbroles.scram_verifier("pencil", salt=salt) == verifier
    assert dbroles.scram_verifier("pencil") != verifier  # a fresh salt each time


def test_a_password_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "onedoor_router.password"
    first = dbroles.ensure_password(path)
    assert dbroles.ensure_password(path) == first
    assert len(first) >= 40
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_a_service_is_given_its_role_and_password_file_not_the_owners(tmp_path: Path) -> None:
    env = dbroles.service_env("postgresql://postgres:owner-pw@db:5432/onedoor", "router", tmp_path)
    assert env == {
        "DATABASE_URL": "postgresql://onedoor_router@db:5432/onedoor",
        "ONEDOOR_DATABASE_PASSWORD_FILE": str(tmp_path / "onedoor_router.password"),
    }
    auditor = dbroles.service_env("postgresql://postgres@db:5432/onedoor", "auditor", tmp_path)
    assert auditor["DATABASE_URL"] == "postgresql://onedoor_auditor@db:5432/onedoor"


def test_database_user_names_the_role_in_a_shared_url(tmp_path: Path) -> None:
    # One DATABASE_URL for a whole deployment (a ConfigMap); each service names its role.
    settings = Settings(
        database_url="postgresql://db.example:5432/onedoor",  # type: ignore[arg-type]
        database_user="onedoor_router",
        database_password_file=password_file(tmp_path, "s3cret"),
    )
    dsn = urlsplit(settings.dsn())
    assert (dsn.username, dsn.password, dsn.hostname) == ("onedoor_router", "s3cret", "db.example")
