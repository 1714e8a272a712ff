"""Intake's key store: one data key per applicant (``subject_keys``, wrapped with the
centre's secret), sealing of the applicant's fields for CaseAccepted, and erasure.

See shared.contracts.sealing for the format and docs/privacy.md for the design.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID, uuid4

from shared.contracts.events import Applicant, SealedApplicant
from shared.contracts.sealing import PERSONAL_FIELDS, CentreSecret, new_data_key, seal
from shared.platform.db import Connection

DataKey = tuple[UUID, bytes]  # (key_id, key)


async def data_keys(
    conn: Connection, secret: CentreSecret, refs: Iterable[str]
) -> dict[str, DataKey]:
    """The data key of each reference, made for those that have none (in the caller's
    transaction: a case and its person's key are committed together, or neither)."""
    wanted = sorted(set(refs))
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT ref, key_id, wrapped FROM subject_keys WHERE ref = ANY($1::text[])", wanted
    )
    missing = sorted(set(wanted) - {r["ref"] for r in rows})
    if missing:
        fresh = [(ref, uuid4(), secret.wrap(ref, new_data_key())) for ref in missing]
        # Two batches may make the same person's first key at once: one wins, both read it.
        await conn.execute(
            """INSERT INTO subject_keys (ref, key_id, wrapped)
               SELECT * FROM unnest($1::text[], $2::uuid[], $3::bytea[])
               ON CONFLICT (ref) DO NOTHING""",
            [f[0] for f in fresh],
            [f[1] for f in fresh],
            [f[2] for f in fresh],
        )
        rows = await conn.fetch(
            "SELECT ref, key_id, wrapped FROM subject_keys WHERE ref = ANY($1::text[])", wanted
        )
    return {r["ref"]: (r["key_id"], secret.unwrap(r["ref"], r["wrapped"])) for r in rows}


def sealed_applicant(
    applicant: Applicant, ref: str, key: DataKey, case_id: UUID
) -> SealedApplicant:
    """The applicant as CaseAccepted carries it: every personal field sealed."""
    key_id, raw = key
    values = applicant.model_dump()
    return SealedApplicant(
        kind=applicant.kind,
        ref=ref,
        key_id=key_id,
        sealed={f: seal(raw, key_id, case_id, f, values[f]) for f in PERSONAL_FIELDS},
    )


async def erase(conn: Connection, ref: str) -> list[UUID]:
    """Delete the person's data key and intake's clear contacts of their cases (the phone
    a citizen's one-time code goes to); return the key ids deleted."""
    deleted = await conn.fetch("DELETE FROM subject_keys WHERE ref = $1 RETURNING key_id", ref)
    await conn.execute(
        """DELETE FROM citizen_contacts
           WHERE case_id IN (SELECT case_id FROM cases WHERE applicant_ref = $1)""",
        ref,
    )
    return [r["key_id"] for r in deleted]
