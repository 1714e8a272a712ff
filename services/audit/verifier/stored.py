"""What a replay asks the audit store, when it can reach it: the signature verdicts
recorded at ingest (so that verify need not check those signatures again) and the walk
of the store's own hash chains. A replay without the store checks everything itself and
reports the chains as not checked."""

from __future__ import annotations

import asyncio
from collections.abc import Container

import asyncpg

from services.audit import chains, store
from services.audit.ingest import VERDICT_SIGNER
from services.audit.verifier.report import Violation
from shared.messaging.signing import Signer, SigningKeyError, verdict_mac_key
from shared.platform.settings import Settings


async def _connect(settings: Settings) -> asyncpg.Connection | None:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            settings.dsn(), server_settings={"search_path": store.SCHEMA}
        )
    except (OSError, asyncpg.PostgresError):
        return None
    return conn


async def verified_digests(settings: Settings, shard: tuple[int, int] = (1, 0)) -> Container[bytes]:
    """The good ingest-time signature verdicts of this deployment (of one ``shard``, see
    ``store.verified_digests``) whose MAC checks under the audit's key. None (every
    signature checked here) when the store is not reachable or predates verdicts, or when
    this keys folder holds no audit key."""
    try:
        mac_key = verdict_mac_key(
            Signer.load(settings.keys_dir, VERDICT_SIGNER, key_file=settings.signing_key_file)
        )
    except (SigningKeyError, OSError, ValueError):
        return frozenset()
    conn = await _connect(settings)
    if conn is None:
        return frozenset()
    try:
        return await store.verified_digests(conn, settings.topic_prefix, mac_key, shard)
    except asyncpg.PostgresError:
        return frozenset()  # e.g. a store the audit service has not migrated yet
    finally:
        await conn.close()


def load_verdicts(
    settings: Settings, shard: tuple[int, int], *, reuse: bool
) -> asyncio.Task[Container[bytes]]:
    """The stored verdicts a replay may reuse, loading beside the reading; none when every
    signature is to be checked (or none at all)."""
    return asyncio.create_task(
        verified_digests(settings, shard) if reuse else asyncio.sleep(0, frozenset())
    )


async def chain_breaks(settings: Settings) -> list[Violation] | None:
    """Hash-chain breaks in the audit store; None when the store is not reachable or
    holds no event table (not migrated), so its chains were not checked."""
    conn = await _connect(settings)
    if conn is None:
        return None
    other = await _connect(settings)  # the walk's second half, side by side
    try:
        if not await conn.fetchval("SELECT to_regclass('events') IS NOT NULL"):
            return None
        return await chains.check_chains_in_database(conn, other)
    finally:
        await conn.close()
        if other is not None:
            await other.close()
