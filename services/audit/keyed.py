"""What makes the audit store tamper-evident beyond its plain SHA-256 chains.

- Each stored event's chain link carries a MAC (``link_mac``) under a secret derived
  from the audit service's own private key, as the signature verdicts do. A PostgreSQL
  superuser can rewrite a row and recompute the plain chain after it, but not the MACs:
  ``verify`` finds the first row of the case whose MAC fails (``store_tampered``).
- Each log partition's store rows, in offset order, fold into a rolling digest
  (:func:`fold`); the audit service signs it on the log now and then
  (``AuditCheckpoint``), so a row deleted or changed after a checkpoint no longer
  adds up to it (``checkpoint_mismatch``).
"""

from __future__ import annotations

import hashlib
from uuid import UUID

from shared.messaging.signing import Signer

# Domain separation: this key never equals the verdicts' (verdict_mac_key), so a MAC of
# one kind can never pass for the other.
_LINK_KEY_TAG = b"onedoor-audit-link-mac-key/v1\x00"
_LINK_TAG = b"onedoor-audit-link/v1\x00"
DIGEST_START = bytes(32)  # a partition's rolling digest before its first row


def link_mac_key(signer: Signer) -> bytes:
    """The secret that keys each stored row's MAC, derived from the audit's private key
    (whoever may only write to the database cannot make a MAC that checks)."""
    return hashlib.sha256(_LINK_KEY_TAG + bytes(signer.key)).digest()


def link_mac(
    key: bytes,
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
    """A MAC (keyed BLAKE2b, 32 bytes) binding one stored row's chain link to its case,
    its place in the case's chain and its place in the log. The chain hash already covers
    the previous row's link, the row's content hash and its event id."""
    names = f"{prefix}\x00{topic}".encode("utf-8", "surrogatepass")
    body = b"".join(
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
    return hashlib.blake2b(body, key=key, digest_size=32).digest()


def fold(digest: bytes, offset: int, content: bytes) -> bytes:
    """A partition's rolling digest after one more store row (at ``offset``, whose value
    hashes to ``content``, SHA-256)."""
    return hashlib.sha256(digest + offset.to_bytes(8, "big", signed=True) + content).digest()
