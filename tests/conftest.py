"""Test fixtures: a real Kafka broker and a real PostgreSQL server for the whole session.

Where they come from, in order:
1. KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL, when both are set (an existing stack; the
   database owner's DSN, with ONEDOOR_DATABASE_PASSWORD_FILE as `make stack-up` prints);
2. testcontainers, when ONEDOOR_TESTCONTAINERS=1 and a Docker engine answers;
3. otherwise the local stack launcher (deploy/stack.py), started here if it is not up,
   and stopped at the end of the session only if this session started it.

Isolation: every test module gets a fresh database, every test a fresh topic prefix.
Each fresh database is provisioned like a deployment's (deploy/dbroles.py): a schema
per service owned by the service's own role, and the auditor's grants; services started
as processes connect as those roles (tests/e2e/harness.py), never as the superuser.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr

from deploy import dbroles, kafka_security
from deploy import stack as local_stack
from services.catalogue import default_catalogue
from shared.contracts.catalogue import Catalogue
from shared.messaging.topics import delete_topics_with_prefix
from shared.platform.db import create_database, drop_database
from shared.platform.settings import Settings, compose_dsn


class SecretDsn(str):
    """A DSN holding a password: shown without it (pytest prints fixtures' values in its
    failure reports), used as the plain string it is."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(compose_dsn(self, password="***"))


@dataclass(frozen=True)
class Stack:
    bootstrap_servers: str
    # The owner's DSN (with its password): CREATE DATABASE, provisioning.
    database_url: str = field(repr=False)
    local: local_stack.StackConfig | None = None  # set when the tests run the local stack
    secrets_dir: Path = field(default_factory=dbroles.default_secrets_dir)  # roles' passwords
    # The Kafka principal of the tests' own tools and of provisioning (the local stack's
    # super user); services started by a test connect as themselves (kafka.client_env).
    kafka: kafka_security.KafkaAccess = field(
        default_factory=lambda: kafka_security.KafkaAccess(Settings())
    )

    @property
    def admin(self) -> Settings:
        return self.kafka.admin


def _from_testcontainers() -> Iterator[Stack]:
    # Imported only on request: most machines running these tests have no Docker engine.
    from testcontainers.kafka import KafkaContainer  # noqa: PLC0415
    from testcontainers.postgres import PostgresContainer  # noqa: PLC0415

    with KafkaContainer() as kafka, PostgresContainer("postgres:16") as pg:
        url = pg.get_connection_url().replace("postgresql+psycopg2://", "postgresql://")
        # The container's broker has no authorizer: no principals, no ACLs.
        bootstrap = kafka.get_bootstrap_server()
        plain = {"ONEDOOR_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
        admin = Settings(kafka_bootstrap_servers=bootstrap, kafka_security_protocol="PLAINTEXT")
        yield Stack(
            bootstrap,
            SecretDsn(url),
            secrets_dir=Path(tempfile.mkdtemp()),
            kafka=kafka_security.KafkaAccess(admin, plain),
        )


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    database_url = os.environ.get("DATABASE_URL")
    if bootstrap and database_url:
        # An existing stack: the environment names the tools' principal (an admin) and
        # the database owner's password file.
        yield Stack(
            bootstrap, SecretDsn(Settings().dsn()), kafka=kafka_security.KafkaAccess(Settings())
        )
        return
    if os.environ.get("ONEDOOR_TESTCONTAINERS") == "1":
        yield from _from_testcontainers()
        return
    cfg = local_stack.StackConfig.from_env()
    already_up = bool(local_stack.kafka_running(cfg) and local_stack.pg_running(cfg))
    local_stack.up(cfg)
    try:
        yield Stack(
            cfg.bootstrap_servers,
            SecretDsn(cfg.admin_dsn()),
            cfg,
            cfg.secrets_dir,
            kafka=kafka_security.KafkaAccess.of(cfg),
        )
    finally:
        if not already_up:
            local_stack.down(cfg)


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    """The catalogue shipped under services/ (read once; a Catalogue is immutable)."""
    return default_catalogue()


@pytest.fixture(scope="module")
async def database_url(stack: Stack) -> AsyncIterator[str]:
    """A fresh database for one test module, dropped afterwards: the owner's DSN. Its
    services' schemas are made and owned by their roles, as `make stack-up` makes them
    in the stack's own database (their tables come with the services' migrations)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = SecretDsn(await create_database(stack.database_url, name))
    await dbroles.provision(dsn, dbroles.SERVICES, stack.secrets_dir)
    yield dsn
    await drop_database(stack.database_url, name)


@pytest.fixture
async def topic_prefix(stack: Stack) -> AsyncIterator[str]:
    """A fresh topic namespace for one test, deleted afterwards (so a developer's broker
    does not pile up thousands of test partitions and slow its restarts)."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    yield prefix
    with contextlib.suppress(Exception):
        await delete_topics_with_prefix(stack.admin, prefix)


@pytest.fixture
def settings(stack: Stack, database_url: str, topic_prefix: str, tmp_path: Path) -> Settings:
    """Settings pointing at the real stack, this module's database and this test's topics,
    with the stack's signing keys and registry in this test's own keys folder. Kafka
    clients built from them connect as the stack's admin (the test's own tools, and the
    services a test builds in-process); services a test starts as processes connect as
    themselves (tests/e2e/harness.py)."""
    local_stack.ensure_keys(tmp_path / "keys")
    return stack.admin.model_copy(
        update={
            "database_url": SecretStr(database_url),
            "topic_prefix": topic_prefix,
            "topic_partitions": 3,
            "keys_dir": tmp_path / "keys",
            "log_json": True,
        }
    )
