"""An in-memory :class:`~shared.messaging.store.Store`, for unit tests of handlers.

A handler runs through the real :class:`~shared.messaging.consumer.BatchProcessor`,
fast path and careful mode alike, without Kafka or PostgreSQL::

    keys = keys_for(tmp_path / "keys", "router", "libraries")
    store = MemoryStore(MyTables())
    processor = BatchProcessor(settings, store, OutboxWriter(signer), handler,
                               consumer_name="libraries", keys=keys)
    router = Signer.load(tmp_path / "keys", "router")
    result = await processor.process([record_of("dept.libraries.tasks", task, signer=router)])
    assert [row.topic for row in store.outbox] == ["dept.libraries.outcomes"]

The store keeps the inbox and the outbox as the engine writes them, and gives the
handler a :class:`MemoryConnection`. Transactions and savepoints behave as in
PostgreSQL for everything the store holds: an exception that leaves one puts back what
it wrote. A handler's own SQL is answered by the :class:`FakeTables` handed to the store
(a fake per schema: the test says what its statements do); a statement no fake answers
fails loudly, naming the statement.

It lives in the package, not in the test tree, so that department packages kept outside
this repository can unit-test their handlers against the same engine.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast
from uuid import UUID

from shared.contracts.events import Event
from shared.messaging.consumer import Record
from shared.messaging.keyring import generate_all
from shared.messaging.outbox import OutboxRow
from shared.messaging.signing import PublicKeys, Signer
from shared.messaging.store import UnitOfWork
from shared.platform.db import Connection

Row = dict[str, Any]


class UnansweredStatementError(AssertionError):
    """A handler ran SQL that no fake of the store answers: extend the fake."""


@dataclass
class InboxRow:
    topic: str
    partition: int
    offset: int
    dead_letter: bool = False


@dataclass
class MemoryState:
    """Everything a :class:`MemoryStore` holds; copied whole at each (save)point."""

    inbox: dict[UUID, InboxRow] = field(default_factory=dict)
    outbox: list[OutboxRow] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)  # each fake's own data, by name


class FakeTables(Protocol):
    """Answers the statements of one schema's own SQL (tables kept in ``state.tables``)."""

    name: str

    def empty(self) -> Any:
        """The fake's data before anything is written (kept in ``state.tables[name]``)."""
        ...

    def answer(self, data: Any, sql: str, args: Sequence[Any]) -> list[Row] | None:
        """The rows ``sql`` (whitespace collapsed) returns, writing to ``data`` as the
        statement would; None for a statement this fake does not know."""
        ...


class _InboxQueries:
    """The inbox as handlers may read it (a department checks what it has seen)."""

    name = "inbox"

    def __init__(self, state: Any) -> None:
        self._store = state

    def empty(self) -> None:
        return None

    def answer(self, data: Any, sql: str, args: Sequence[Any]) -> list[Row] | None:
        if sql.startswith("SELECT event_id FROM inbox WHERE event_id = ANY($1"):
            inbox = self._store.state.inbox
            return [{"event_id": i} for i in args[0] if i in inbox]
        return None


def normalise(sql: str) -> str:
    """The statement with its whitespace collapsed: what fakes match on."""
    return " ".join(sql.split())


class MemoryConnection:
    """What a handler gets as ``conn``: the asyncpg calls handlers make, answered by the
    store's fakes."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.statements: list[str] = []  # every statement run, in order

    def _run(self, sql: str, args: Sequence[Any]) -> list[Row]:
        text = normalise(sql)
        self.statements.append(text)
        state = self._store.state
        for fake in self._store.fakes:
            rows = fake.answer(state.tables.get(fake.name), text, args)
            if rows is not None:
                return rows
        raise UnansweredStatementError(f"no fake answers: {text}")

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return self._run(sql, args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = self._run(sql, args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        rows = self._run(sql, args)
        return next(iter(rows[0].values())) if rows else None

    async def execute(self, sql: str, *args: Any) -> str:
        self._run(sql, args)
        return "OK"

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        for one in args:
            self._run(sql, one)

    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._store.savepoint()


class MemoryUnitOfWork:
    """The engine's side of one :class:`MemoryStore` transaction."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.conn = cast(Connection, store.connection)

    async def reclaim(self, event_ids: Sequence[UUID]) -> set[UUID]:
        inbox = self._store.state.inbox
        reclaimed = {i for i in event_ids if i in inbox and inbox[i].dead_letter}
        for event_id in reclaimed:
            inbox[event_id].dead_letter = False
        return reclaimed

    async def claim(self, entries: Sequence[tuple[UUID, Record]]) -> set[UUID]:
        inbox = self._store.state.inbox
        fresh: set[UUID] = set()
        for event_id, record in entries:
            if event_id not in inbox:
                inbox[event_id] = InboxRow(record.topic, record.partition, record.offset)
                fresh.add(event_id)
        return fresh

    async def mark_dead(self, event_id: UUID, record: Record) -> None:
        inbox = self._store.state.inbox
        row = inbox.setdefault(event_id, InboxRow(record.topic, record.partition, record.offset))
        row.dead_letter = True

    async def write_outbox(self, rows: Sequence[OutboxRow]) -> None:
        self._store.state.outbox.extend(rows)

    def savepoint(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._store.savepoint()


class MemoryStore:
    """A :class:`~shared.messaging.store.Store` in memory (see the module docstring).

    ``state`` holds what is committed (and, inside a transaction, what is written so
    far); ``commits`` and ``rollbacks`` count the outermost transactions.
    """

    def __init__(self, *fakes: FakeTables) -> None:
        self.fakes: list[FakeTables] = [_InboxQueries(self), *fakes]
        self.state = MemoryState(tables={f.name: f.empty() for f in self.fakes})
        self.connection = MemoryConnection(self)
        self.commits = 0
        self.rollbacks = 0
        self._open = False

    @property
    def inbox(self) -> dict[UUID, InboxRow]:
        return self.state.inbox

    @property
    def outbox(self) -> list[OutboxRow]:
        return self.state.outbox

    def tables(self, name: str) -> Any:
        """The data of the fake called ``name``."""
        return self.state.tables[name]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        if self._open:
            raise AssertionError("a MemoryStore transaction inside another: use savepoint()")
        self._open = True
        try:
            async with self.savepoint():
                yield MemoryUnitOfWork(self)
        except BaseException:
            self.rollbacks += 1
            raise
        else:
            self.commits += 1
        finally:
            self._open = False

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        saved = copy.deepcopy(self.state)
        try:
            yield
        except BaseException:
            self.state = saved
            raise


def record_of(
    topic: str,
    event: Event | bytes,
    *,
    offset: int = 0,
    partition: int = 0,
    headers: tuple[tuple[str, bytes], ...] = (),
    signer: Signer | None = None,
) -> Record:
    """A record as the consumer loop hands it over: ``event`` (or raw bytes) on ``topic``
    (the deployed name), keyed by its case like every producer of ours keys it, and
    signed by ``signer`` when given (its headers before ``headers``)."""
    value = event.to_json() if isinstance(event, Event) else event
    if signer is not None:
        headers = (*((k, v.encode()) for k, v in signer.headers(value)), *headers)
    key = str(event.case_id).encode() if isinstance(event, Event) else b"raw"
    return Record(topic, partition, offset, key, value, headers)


def keys_for(keys_dir: Path, *services: str) -> PublicKeys:
    """Private keys for ``services`` in a keys folder of a test's own (kept when they
    exist) and the registry over them, loaded."""
    return PublicKeys.load(generate_all(keys_dir, services))


def signer_for(keys_dir: Path, service: str) -> Signer:
    """``service``'s signer from a test's keys folder, its key made (and registered there)
    when missing."""
    generate_all(keys_dir, [service])
    return Signer.load(keys_dir, service)
