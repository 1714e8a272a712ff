"""What a service started with ``ONEDOOR_MIGRATE_AT_START=false`` does instead of
migrating: wait for ``onedoor-migrate`` (the Kubernetes Job, ``services/migrate.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from shared.messaging.topics import missing_topics
from shared.platform.db import pending_migrations
from shared.platform.settings import Settings


async def wait_for_migrate_job(  # noqa: PLR0917 - start-up's own arguments
    settings: Settings,
    log: Any,
    schema: str,
    directories: Sequence[Path],
    topics: Sequence[str],
    wait: Callable[[Callable[[], Awaitable[Any]], Any], Awaitable[Any]],
) -> None:
    """``ONEDOOR_MIGRATE_AT_START=false``: wait (back-off 1 s doubling to 10 s, until a
    stop) until ``onedoor-migrate`` has applied every migration of this image to
    ``schema`` and created ``topics``; never migrate from here. A schema ahead of the
    image (a newer release's migrations) is fine: migrations only add. ``wait``: how a
    step waits out a dependency that is away (``runtime.wait_for_dependency``)."""
    delay = 1.0
    while True:
        pending = await wait(lambda: pending_migrations(settings.dsn(), schema, directories), log)
        missing: list[str] = []
        if topics:  # none asked: the broker is not needed here
            missing = await wait(lambda: missing_topics(settings, topics), log)
        if not pending and not missing:
            log.info("schema and topics ready (made by onedoor-migrate)", schema=schema)
            return
        log.warning(
            "waiting for onedoor-migrate (the migrations Job)",
            schema=schema,
            pending_migrations=pending,
            missing_topics=len(missing),
            retry_in_s=delay,
        )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)
