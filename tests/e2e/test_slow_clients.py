"""Slow and idle clients at intake's real HTTP server (a process on a real port): each is
cut off after ONEDOOR_HTTP_READ_TIMEOUT_S, and the windows' requests go on meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import Stack
from tests.e2e.harness import Pipeline, case_body, person, run_services
from tests.e2e.test_pipeline import BENEFIT_FORM

pytestmark = pytest.mark.e2e

READ_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def pipeline(
    stack: Stack, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    with run_services(
        {"intake": ["-m", "services.intake"]},
        bootstrap_servers=stack.bootstrap_servers,
        database_url=database_url,
        logs=tmp_path_factory.mktemp("logs"),
        extra_env={"ONEDOOR_HTTP_READ_TIMEOUT_S": str(READ_TIMEOUT_S)},
    ) as pipeline:
        yield pipeline


async def _trickle(host: str, port: int, *, idle: bool) -> float:
    """Open a connection and send a request a byte every half second (or nothing);
    return how long until the server closed it."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    request = b"POST /cases HTTP/1.1\r\nHost: intake\r\nContent-Length: 100000\r\n\r\n{"
    closed = asyncio.create_task(reader.read())  # b"" once the server closes
    try:
        for byte in [] if idle else [request[i : i + 1] for i in range(len(request))]:
            if closed.done():
                break
            writer.write(byte)
            await writer.drain()
            await asyncio.wait({closed}, timeout=0.5)
        await asyncio.wait_for(closed, timeout=READ_TIMEOUT_S * 10)
        return time.monotonic() - started
    finally:
        writer.close()


async def test_slow_and_idle_clients_are_cut_off_while_windows_are_served(
    pipeline: Pipeline,
) -> None:
    address = urlsplit(pipeline.base)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    slow = [asyncio.create_task(_trickle(host, port, idle=n % 2 == 0)) for n in range(20)]
    async with httpx.AsyncClient(base_url=pipeline.base, timeout=30, headers=pipeline.auth) as c:
        served = [
            (
                await c.post(
                    "/cases", json=case_body("SS-UNEMPLOYMENT-BENEFIT", person(), BENEFIT_FORM)
                )
            ).status_code
            for _ in range(5)
        ]
    held = await asyncio.gather(*slow)
    assert served == [201] * 5
    # Every slow client was cut off: none held its connection to the test's own limit.
    assert max(held) < READ_TIMEOUT_S * 10, held
    assert min(held) >= READ_TIMEOUT_S * 0.9, held  # and not before the deadline
