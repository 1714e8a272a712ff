"""How a department opens the applicant fields its tasks carry sealed.

Data keys live in intake's database only; a department reads them, wrapped, through the
function ``intake.subject_data_keys`` (its role may run it and nothing else there, see
deploy/dbroles.py), unwraps them with the centre's privacy secret and keeps them in
memory for ``privacy_key_cache_s``: an erasure reaches a running department that late
at most. A task whose applicant was erased cannot be opened: it is dead-lettered with
the reason ``SealError`` (nobody can decide a step for a person who no longer exists
in the system).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from shared.contracts.events import SealedApplicant
from shared.contracts.sealing import CentreSecret, open_sealed
from shared.platform.db import Connection


@dataclass(frozen=True, slots=True)
class OpenedApplicant:
    """A task's applicant with the fields opened, for one decision (never stored)."""

    kind: str
    ref: str
    name: str
    id_number: str


class DataKeys:
    """Data keys by reference, fetched in one query per batch and cached for a while."""

    def __init__(self, secret: CentreSecret, ttl_s: float) -> None:
        self._secret = secret
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, UUID, bytes]] = {}

    async def prefetch(self, conn: Connection, refs: Iterable[str]) -> None:
        now = time.monotonic()
        wanted = sorted(
            {r for r in refs if r.startswith("s1-")}
            - {r for r, (at, _, _) in self._cache.items() if now - at < self._ttl_s}
        )
        for ref in wanted:
            self._cache.pop(ref, None)
        if not wanted:
            return
        rows = await conn.fetch(
            "SELECT ref, key_id, wrapped FROM intake.subject_data_keys($1::text[])", wanted
        )
        for row in rows:
            key = self._secret.unwrap(row["ref"], row["wrapped"])
            self._cache[row["ref"]] = (now, row["key_id"], key)

    def remember(self, ref: str, key_id: UUID, key: bytes) -> None:
        """Hold a key given by hand (tools and tests that hold one already)."""
        self._cache[ref] = (time.monotonic(), key_id, key)

    def open(self, applicant: SealedApplicant, case_id: UUID) -> OpenedApplicant:
        """The applicant's fields in clear.

        Raises:
            SealError: the person's key is erased (or the task's fields were altered).
        """
        cached = self._cache.get(applicant.ref)
        key = cached[2] if cached is not None and cached[1] == applicant.key_id else None

        def field(name: str) -> str:
            token = applicant.sealed.get(name)
            return "" if token is None else open_sealed(key, applicant.key_id, case_id, name, token)

        return OpenedApplicant(applicant.kind, applicant.ref, field("name"), field("id_number"))
