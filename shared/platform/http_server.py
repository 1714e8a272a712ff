"""uvicorn as intake and the audit run it: bounded connections and read deadlines.

uvicorn on its own closes an idle keep-alive connection, but waits forever for the
headers and body of a request that trickles in (20 of 20 clients sending a byte a second
held their connections). :class:`DeadlineProtocol` gives every request
``http_read_timeout_s`` from its first byte (or from the connection, for a client that
sends nothing) until its body is complete, then closes the connection. uvicorn's
``limit_concurrency`` answers 503 past ``http_max_connections``. A reverse proxy in
front should enforce the same or tighter limits (docs/deploy.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.platform.settings import Settings

log = structlog.get_logger("http")


class DeadlineProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with a deadline for reading each request (headers and body)."""

    read_timeout_s = 30.0  # set per server by :func:`config`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.read_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        log.warning("request not read in time: connection closed", limit_s=self.read_timeout_s)
        self.transport.close()


def config(app: Any, settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` under ``settings`` (no signal handlers, our
    log set-up, the limits above)."""
    protocol = type(
        "Deadline", (DeadlineProtocol,), {"read_timeout_s": settings.http_read_timeout_s}
    )
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        http=protocol,
        lifespan="off",  # the service runs already
        log_config=None,  # our structlog set-up (PII masking) takes its lines
        timeout_graceful_shutdown=20,
        limit_concurrency=settings.http_max_connections,
        timeout_keep_alive=settings.http_keepalive_s,
    )
