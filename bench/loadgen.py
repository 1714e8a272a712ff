"""A lean HTTP/1.1 keep-alive client for the open-loop load generator.

The benchmark's load generator shares the same two cores as Kafka, PostgreSQL and every
service, so what it spends per request is taken from the system it measures. httpx cost
far more CPU per POST and, with a few hundred requests in flight, its connection pool
became the bottleneck (requests timed out in the client while intake sat idle). This
client spends little (docs/performance.md): request bodies are encoded once up front, each
connection is a pair of asyncio streams, and responses are read by Content-Length.

It speaks only what intake answers (no chunked bodies, no redirects): a bench tool, not a
general client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

IDLE_LIMIT_S = 2.0  # well under uvicorn's 5 s keep-alive timeout


class HttpError(Exception):
    """The connection broke or the answer was not HTTP/1.1 with a Content-Length."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def encode_post(host: str, path: str, body: dict[str, Any], *, token: str | None = None) -> bytes:
    """One whole POST request, ready to write on a keep-alive connection (with the
    clerk's ``Authorization: Bearer`` header when ``token`` is given)."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    async def exchange(self, request: bytes) -> Answer:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HttpError(f"not an HTTP answer: {lines[0][:80]!r}")
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length is None:
            raise HttpError("answer without Content-Length")
        body = await self.reader.readexactly(length)
        return Answer(int(parts[1]), body)

    def close(self) -> None:
        self.writer.close()


class Client:
    """Up to ``connections`` keep-alive connections to one host; requests wait for one."""

    def __init__(self, host: str, port: int, connections: int = 64) -> None:
        self.host = host
        self.port = port
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(connections)

    async def send(self, request: bytes) -> Answer:
        """Send one pre-encoded request; HttpError or OSError when it fails. The caller
        bounds the wait (``asyncio.timeout``); a cancelled exchange drops its connection."""
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            if conn is not None and time.monotonic() - conn.idle_since > IDLE_LIMIT_S:
                # The server may be closing it right now (keep-alive timeout): a POST is
                # not retried, so never send one on a connection that may be going away.
                conn.close()
                conn = None
            if conn is None:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                conn = _Conn(reader, writer)
            try:
                answer = await conn.exchange(request)
            except BaseException:
                conn.close()
                raise
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
            return answer

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()
