"""What makes the audit store tamper-evident beyond its plain SHA-256 chains.

- Each stored event's chain link is signed by the audit service with its own Ed25519
  key (``link_signature``; the rows of one batch share one signature over a Merkle tree,
  as the services' records do). A PostgreSQL superuser can rewrite a row and recompute
  the plain chain after it, but not the signatures: ``verify`` finds the first row of
  the case whose signature fails (``store_tampered``), with the audit's public keys
  alone (the registry keeps retired ones, so a key rotation leaves old rows checkable).
- Each log partition's store rows, in offset order, fold into a rolling digest
  (:func:`fold`); the audit service signs it on the log now and then
  (``AuditCheckpoint``), so a row deleted or changed after a checkpoint no longer
  adds up to it (``checkpoint_mismatch``).
"""

from __future__ import annotations

import hashlib
from uuid import UUID

# Domain separation: no record value and no batch root starts with this tag, so a
# signature over a link never passes for a signature over anything else.
_LINK_TAG = b"onedoor-audit-link/v1\x00"
DIGEST_START = bytes(32)  # a partition's rolling digest before its first row


def link_message(
    *,
    prefix: str,
    case_id: UUID,
    case_seq: int,
    event_id: UUID,
    topic: str,
    partition: int,
    offset: int,
    chain_hash: str,
) -> bytes:
    """What the audit signs of one stored row: its chain link bound to its deployment,
    case, place in the case's chain and place in the log. The chain hash already covers
    the previous row's link, the row's content hash and its event id."""
    names = f"{prefix}\x00{topic}".encode("utf-8", "surrogatepass")
    return b"".join(
        (
            _LINK_TAG,
            len(names).to_bytes(4, "big"),
            names,
            case_id.bytes,
            case_seq.to_bytes(4, "big", signed=True),
            event_id.bytes,
            partition.to_bytes(4, "big", signed=True),
            offset.to_bytes(8, "big", signed=True),
            bytes.fromhex(chain_hash),
        )
    )


def fold(digest: bytes, offset: int, content: bytes) -> bytes:
    """A partition's rolling digest after one more store row (at ``offset``, whose value
    hashes to ``content``, SHA-256)."""
    return hashlib.sha256(digest + offset.to_bytes(8, "big", signed=True) + content).digest()
