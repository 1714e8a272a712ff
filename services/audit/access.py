"""Who read whose data, from the audit's side.

- The answers: every recorded ``PersonalDataAccessed`` of a case ("who read this
  person's data") or of an account ("what did this account read"), and the counts by
  role, read from the audit's store (``onedoor-audit access``, ``GET /access/...``,
  ``stats``). Listing the reads shows no personal data of the applicant (accounts, roles,
  field names, reasons, times), so it is not itself recorded as a read.
- The command line's identity: ``onedoor-audit history`` shows a case, so it needs the
  person running it: an access token from intake (``ONEDOOR_TOKEN_FILE`` or
  ``--token-file``), verified with the public half of intake's token key; and it records
  the read on ``access.audit``, signed with the audit's key, acknowledged by the broker
  (acks=all) before it prints anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from uuid import UUID

from aiokafka.errors import KafkaError

from shared.contracts.access import READERS, Accessor
from shared.contracts.events import PersonalDataAccessed
from shared.contracts.topology import AUDIT, access_topic
from shared.messaging.access import AccessNotRecordedError
from shared.messaging.kafka import make_producer
from shared.messaging.signing import Signer, SigningKeyError
from shared.platform.db import Connection
from shared.platform.secret_files import shared_mode
from shared.platform.settings import Settings
from shared.platform.tokens import Claims, TokenVerifier, decide, load_verify_key

TOKEN_FILE_ENV = "ONEDOOR_TOKEN_FILE"  # noqa: S105 - the variable's name, not a secret
SIGN_IN_FIX = (
    "sign in at intake (POST /auth/token as an auditor or admin), write the access_token "
    f"to a file only you may read, and set {TOKEN_FILE_ENV}=that file (or --token-file)"
)


class IdentityError(RuntimeError):
    """The person running the command line is not known, or may not read cases."""


def cli_accessor(settings: Settings, token_file: str | None) -> Accessor:
    """Who runs the command line, from their access token (see the module's doc)."""
    path = token_file or os.environ.get(TOKEN_FILE_ENV)
    if not path:
        raise IdentityError(f"this command shows a case's data; say who you are: {SIGN_IN_FIX}")
    try:
        mode = shared_mode(Path(path))
        token = Path(path).read_text(encoding="ascii", errors="replace").strip()
    except OSError as exc:
        raise IdentityError(f"cannot read the token file {path} ({exc.strerror})") from None
    if mode is not None:
        raise IdentityError(
            f"the token file {path} is mode {mode:o}: others may read it; chmod 600 {path}"
        )
    key_path = settings.token_public_key_path()
    try:
        key = load_verify_key(key_path)
    except (OSError, ValueError):
        raise IdentityError(
            f"cannot read intake's public token key at {key_path}: copy intake's "
            "access-token.pub there or set ONEDOOR_TOKEN_PUBLIC_KEY_FILE"
        ) from None
    claims = decide(TokenVerifier(key), f"Bearer {token}", tuple(sorted(READERS[AUDIT])))
    if not isinstance(claims, Claims):
        _, why = claims
        raise IdentityError(f"the token in {path} is refused: {why}; {SIGN_IN_FIX}")
    return Accessor(claims.sub, claims.role, claims.centre)


async def publish(settings: Settings, event: PersonalDataAccessed) -> None:
    """Put ``event`` on ``access.audit`` signed with the audit's key, and return once the
    broker has it (acks=all); :class:`AccessNotRecordedError` otherwise."""
    try:
        signer = Signer.load(settings.keys_dir, AUDIT, key_file=settings.signing_key_file)
    except SigningKeyError as exc:
        raise AccessNotRecordedError(f"the audit's signing key is not available: {exc}") from exc
    value = event.to_json()
    headers = [("event_type", event.event_type), *signer.headers(value)]
    producer = make_producer(settings)
    try:
        await producer.start()
        await producer.send_and_wait(
            settings.topic(access_topic(AUDIT)),
            value,
            key=str(event.case_id).encode(),
            headers=[(k, v.encode()) for k, v in headers],
        )
    except KafkaError as exc:
        raise AccessNotRecordedError(
            f"the read could not be recorded on the log ({type(exc).__name__}); check "
            "KAFKA_BOOTSTRAP_SERVERS and that the audit service has run once (it creates "
            f"{access_topic(AUDIT)})"
        ) from exc
    finally:
        await producer.stop()


def listed(event: PersonalDataAccessed, signer: str | None) -> dict[str, Any]:
    """One read as the answers list it: who, role, fields, reason, when, through what."""
    return {
        "at": event.occurred_at.isoformat(),
        "case_id": str(event.case_id),
        "accessor": event.accessor,
        "role": event.role,
        "accessor_centre": event.accessor_centre,
        "fields": list(event.fields),
        "reason": event.reason,
        "channel": event.channel,
        "resource": event.resource,
        "service": event.producer,
        "signer": signer,
        "request_id": event.request_id,
        "event_id": str(event.event_id),
    }


Read = tuple[PersonalDataAccessed, str | None]  # a stored read and its record's signer


async def keep_reads(conn: Connection, reads: list[Read]) -> None:
    """Add stored reads (with their record's signer) to ``access_reads``, inside the
    caller's transaction (ingest's, or a rebuild's)."""
    if not reads:
        return
    await conn.execute(
        "INSERT INTO access_reads (event_id, case_id, accessor, role, occurred_at, read) "
        "SELECT e, c, a, r, o, b::jsonb FROM unnest($1::uuid[], $2::uuid[], $3::text[], "
        "$4::text[], $5::timestamptz[], $6::text[]) AS u(e, c, a, r, o, b) "
        "ON CONFLICT (event_id) DO NOTHING",
        [e.event_id for e, _ in reads],
        [e.case_id for e, _ in reads],
        [e.accessor for e, _ in reads],
        [e.role for e, _ in reads],
        [e.occurred_at for e, _ in reads],
        [json.dumps(listed(e, s), ensure_ascii=False) for e, s in reads],
    )


async def reads_of_case(conn: Connection, case_id: UUID) -> list[dict[str, Any]]:
    """Every recorded read of the case, oldest first ("who read this person's data")."""
    rows = await conn.fetch(
        "SELECT read FROM access_reads WHERE case_id = $1 ORDER BY occurred_at, event_id",
        case_id,
    )
    return [dict(r["read"]) for r in rows]


async def reads_by_account(conn: Connection, account: str) -> list[dict[str, Any]]:
    """Every recorded read by the account, oldest first ("what did this account read")."""
    rows = await conn.fetch(
        "SELECT read FROM access_reads WHERE accessor = $1 ORDER BY occurred_at, event_id",
        account,
    )
    return [dict(r["read"]) for r in rows]


async def counts_by_role(conn: Connection) -> dict[str, int]:
    """How many reads of personal data each role made (every service, every channel)."""
    rows = await conn.fetch("SELECT role, count(*) AS n FROM access_reads GROUP BY 1 ORDER BY 1")
    return {str(r["role"]): int(r["n"]) for r in rows}
