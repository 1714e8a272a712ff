"""What an operator's tools ask a running service: ``/metrics``, ``/health/ready``,
``/health/live`` (``/health`` stays each service's JSON figures).

- ``GET /metrics``: Prometheus' text format (:mod:`shared.platform.metrics`); no token,
  no personal data, no case id.
- ``GET /health/ready``: 200 when the service can do its work now, else 503 with the
  reasons: PostgreSQL answers, Kafka answers, no consumer loop or relay is failing and no
  task has died. A service that serves without Kafka (intake: it accepts cases into its
  outbox while the broker is away) is ready with PostgreSQL alone.
- ``GET /health/live``: 200 while the event loop turns; it reads nothing.

Intake and the audit answer them on their HTTP port (:class:`OpsFront` in front of their
app, which also times every request); the consumer services on ``ONEDOOR_HEALTH_PORT``
(:func:`serve_health`).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import asyncpg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.platform import metrics, tracing

if TYPE_CHECKING:
    from shared.platform.runtime import RunningService

DEADLINE_S = 2.0
"""How long a probe waits for PostgreSQL or Kafka before it calls them unreachable."""
JSON = "application/json"


async def scrape(live: RunningService) -> bytes:
    """Read what is read at scrape time (lag, the outbox), then the exposition."""
    service = live.service
    for loop in service.loops:
        loop.metrics.set_lag(await loop.lag_report())
    try:
        live.metrics.set_outbox(await service.relay.state(DEADLINE_S))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        live.metrics.set_outbox(None)
    return live.metrics.exposition()


async def readiness(live: RunningService) -> tuple[bool, dict[str, Any]]:
    """Whether the service is ready, and why (no personal data)."""
    service = live.service
    database = await _database_answers(service.pool)
    reached = await asyncio.gather(*(loop.reaches_broker(DEADLINE_S) for loop in service.loops))
    kafka = all(reached)
    stopped = live.stopped_tasks()
    failing = [e for e in (service.relay.last_error, *(lp.last_error for lp in service.loops)) if e]
    if service.ready_without_kafka:
        ready = database and not stopped
    else:
        ready = database and kafka and not stopped and not failing
    # What is away, by name: an operator reads it off the probe's answer.
    unavailable = [name for name, up in (("postgresql", database), ("kafka", kafka)) if not up]
    return ready, {
        "service": service.name,
        "ready": ready,
        "database": database,
        "kafka": kafka,
        "unavailable": unavailable,
        "errors": [*failing, *stopped],
    }


def liveness(live: RunningService) -> dict[str, Any]:
    return {"service": live.service.name, "live": True, "uptime_s": live.uptime_s()}


async def _database_answers(pool: asyncpg.Pool) -> bool:
    try:
        async with asyncio.timeout(DEADLINE_S), pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    return True


async def answer(live: RunningService, path: str) -> tuple[int, str, bytes] | None:
    """The answer to ``GET path`` for an operations path (status, content type, body);
    None for any other path."""
    if path == "/metrics":
        return 200, metrics.CONTENT_TYPE, await scrape(live)
    if path == "/health/live":
        return 200, JSON, json.dumps(liveness(live)).encode()
    if path == "/health/ready":
        ready, body = await readiness(live)
        return 200 if ready else 503, JSON, json.dumps(body).encode()
    return None


class OpsFront:
    """In front of intake's and the audit's app: answers the operations paths and times
    every other request by method, route template and status class."""

    def __init__(self, app: ASGIApp, live: RunningService) -> None:
        self.app = app
        self._live = live
        self._latency = metrics.http_latency()
        live.metrics.register(self._latency)
        self._series: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET":
            ops = await answer(self._live, scope["path"])
            if ops is not None:
                await _send(send, *ops)
                return
        began = time.perf_counter()
        status = 500

        async def timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with tracing.server_span(scope) as span:
            try:
                await self.app(scope, receive, timed)
            finally:
                route = self._observe(scope, status, time.perf_counter() - began)
                tracing.name_server_span(span, scope["method"], route, status)

    def _observe(self, scope: Scope, status: int, seconds: float) -> str:
        route = scope.get(metrics.ROUTE_KEY)
        if route is None:
            matched = scope.get("route")  # Starlette's, once a route matched
            route = getattr(matched, "path", None) or "unmatched"
        key = (scope["method"], route, status)
        series = self._series.get(key)
        if series is None:
            labels = (key[0] if key[0] in METHODS else "other", route, metrics.status_class(status))
            series = self._series[key] = self._latency.labels(*labels)
        series.observe(seconds)
        return str(route)


METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


async def _send(send: Send, status: int, content_type: str, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def serve_health(live: RunningService) -> asyncio.Server | None:
    """The consumer services' small HTTP server on ``ONEDOOR_HEALTH_PORT`` (none when
    0): ``/health`` (the JSON figures), ``/health/ready``, ``/health/live``, ``/metrics``.
    One request per connection."""
    settings = live.service.settings
    if not settings.health_port:
        return None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = (await reader.readline()).decode("latin-1").split()
                # Read the headers too: a socket closed with unread bytes is reset, and
                # the client may lose the answer.
                for _ in range(100):
                    if (await reader.readline()).strip() == b"":
                        break
            path = request[1].split("?", 1)[0] if len(request) >= 2 else ""
            if request[:1] != ["GET"]:
                reply: tuple[int, str, bytes] = (405, JSON, b'{"detail":"GET only"}')
            elif path == "/health":
                reply = 200, JSON, json.dumps(await live.health()).encode()
            else:
                reply = await answer(live, path) or (404, JSON, b'{"detail":"not found"}')
            status, content_type, body = reply
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # a client that sends nothing in time, or leaves, gets nothing
        finally:
            writer.close()

    return await asyncio.start_server(handle, settings.http_host, settings.health_port)


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
