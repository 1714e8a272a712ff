"""Readiness tells the truth through a real outage.

The router runs against the real stack with its health endpoint on a port of its own;
then PostgreSQL (and, in the second test, the Kafka broker) is stopped for real, as an
outage stops it. ``/health/ready`` answers 503 naming what is away while
``/health/live`` stays 200 (an orchestrator takes the pod out of service, it does not
kill it), and ready answers 200 again once the dependency is back, with no restart of
the service.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from deploy import stack as local_stack
from services.router import main as router
from shared.platform import ops
from shared.platform.runtime import running
from shared.platform.settings import Settings
from tests.conftest import Stack
from tests.e2e.harness import free_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@contextlib.asynccontextmanager
async def probed_router(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The router, running, and a client of its health port once it is ready."""
    port = free_port()
    service = await router.build(settings.model_copy(update={"health_port": port}))
    async with running(service) as live:
        server = await ops.serve_health(live)
        assert server is not None
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                await wait_for(lambda: ready(c, 200), 60, "the router ready")
                yield c
        finally:
            server.close()


async def ready(client: httpx.AsyncClient, status: int) -> dict[str, Any] | None:
    """The readiness answer when it has ``status``, else None."""
    resp = await client.get("/health/ready")
    body: dict[str, Any] = resp.json()
    return body if resp.status_code == status else None


def local(stack: Stack) -> local_stack.StackConfig:
    assert stack.local is not None, "stopping PostgreSQL or Kafka needs the local stack"
    return stack.local


async def test_ready_follows_a_database_outage(stack: Stack, settings: Settings) -> None:
    cfg = local(stack)
    async with probed_router(settings) as client:
        await asyncio.to_thread(local_stack.stop_postgres, cfg)
        try:
            assert local_stack.pg_running(cfg) is None
            body = await wait_for(lambda: ready(client, 503), 30, "not ready without PostgreSQL")
            assert body["unavailable"] == ["postgresql"], body
            assert body["database"] is False
            assert body["kafka"] is True
            live = await client.get("/health/live")
            assert live.status_code == 200
            assert live.json()["live"] is True
        finally:
            await asyncio.to_thread(local_stack.start_postgres, cfg)
        body = await wait_for(lambda: ready(client, 200), 60, "ready again with PostgreSQL")
        assert body["unavailable"] == []
        assert body["errors"] == []


async def test_ready_follows_a_broker_outage(stack: Stack, settings: Settings) -> None:
    cfg = local(stack)
    async with probed_router(settings) as client:
        await asyncio.to_thread(local_stack.stop_kafka, cfg)
        try:
            assert local_stack.kafka_running(cfg) is None
            body = await wait_for(lambda: ready(client, 503), 60, "not ready without Kafka")
            assert body["unavailable"] == ["kafka"], body
            assert body["database"] is True
            assert (await client.get("/health/live")).status_code == 200
        finally:
            await asyncio.to_thread(local_stack.start_kafka, cfg)
        body = await wait_for(lambda: ready(client, 200), 120, "ready again with Kafka")
        assert body["unavailable"] == []
