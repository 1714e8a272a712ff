"""Ed25519 signatures on every event a service produces.

Each service signs with its own private key (``<service>.key`` in ``ONEDOOR_KEYS_DIR``,
raw 32 bytes, mode 0600); the public keys, with their validity periods, are in the key
registry (``shared.messaging.keyring``) that consumers and the audit verify against: an
outcome on ``dept.X.outcomes`` must be signed by X with a key of X valid when the event
occurred. The signature covers the exact record value bytes and travels in the record
headers.

Events written in one transaction are signed together (:meth:`Signer.sign_batch`): one
Ed25519 signature over the root of a Merkle tree of their values (RFC 9162 hashing), and
each record's header carries that signature with the record's inclusion proof. Every
record still verifies on its own, from its own bytes; a batch costs one signature instead
of one per event, and a verifier that meets the same root again reuses its answer. The
header of a batch-signed record reads ``m1.<index>.<size>.<signature>.<proof>``
(base64 signature and proof, the proof being the sibling hashes from the leaf up); a
record signed alone carries the plain base64 signature of its value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nacl.exceptions
import nacl.signing

from shared.messaging.keyring import (
    KeyEntry,
    SigningKeyError,
    generate,
    load_private_key,
    main,
    private_key_path,
    read_registry,
)

SIGNER_HEADER = "onedoor-signer"
SIGNATURE_HEADER = "onedoor-signature"
# Domain separation for record_digest: a verdict digest can never collide with a plain
# content hash of some record value.
_VERDICT_TAG = b"onedoor-signature-verdict/v1\x00"
_MAC_KEY_TAG = b"onedoor-verdict-mac-key/v1\x00"
# What a batch signature signs: this tag, the tree's leaf count (4 bytes, big-endian) and
# its root. No record value starts with it, so a batch signature never passes for a
# signature over a record, nor the other way round.
_BATCH_TAG = b"onedoor-batch-root/v1\x00"
BATCH_PREFIX = "m1."
# Leaves per signed tree: a proof is 32 bytes per level, so 16 leaves add 172 base64
# characters to a header and cost a sixteenth of a signature each.
BATCH_LEAVES = 16
_HASH = 32
_ROOT_CACHE = 4096  # answers kept per verifier for roots met again


__all__ = ["SigningKeyError", "main"]


def generate_keys(keys_dir: Path, service: str) -> Path:
    """A private key for ``service`` (kept when it exists) and its public key in the
    keys folder's registry; return the private key's path (``onedoor-keys generate``)."""
    return generate(keys_dir, service)


@dataclass(frozen=True)
class Signer:
    """Signs record values as one service (Ed25519 through libsodium)."""

    service: str
    key: nacl.signing.SigningKey = field(repr=False)

    def public_key(self) -> bytes:
        """The raw 32-byte public key, as ``onedoor-keys`` writes it to the registry."""
        return bytes(self.key.verify_key)

    @classmethod
    def load(cls, keys_dir: Path, service: str, *, key_file: Path | None = None) -> Signer:
        """The service's own key (``key_file``, else ``<keys_dir>/<service>.key``).
        Raises :class:`SigningKeyError` (with the fix) when it is missing or readable by
        group or others: keys are made by ``onedoor-keys generate``, never here."""
        return cls(
            service, load_private_key(key_file or private_key_path(keys_dir, service), service)
        )

    def sign(self, value: bytes) -> str:
        return base64.b64encode(self.key.sign(value).signature).decode()

    def headers(self, value: bytes) -> list[tuple[str, str]]:
        return self.batch_headers([value])[0]

    def sign_batch(self, values: Sequence[bytes]) -> list[str]:
        """A signature header for each value: one Ed25519 signature per tree of up to
        BATCH_LEAVES values (trees of even size), a plain signature for a value alone."""
        out: list[str] = []
        trees = -(-len(values) // BATCH_LEAVES)
        for start, end in _even_chunks(len(values), trees):
            chunk = values[start:end]
            if len(chunk) == 1:
                out.append(self.sign(chunk[0]))
                continue
            root, paths = merkle_tree([merkle_leaf(v) for v in chunk])
            signature = self.key.sign(batch_message(len(chunk), root)).signature
            sig = base64.b64encode(signature).decode()
            out += [
                f"{BATCH_PREFIX}{i}.{len(chunk)}.{sig}.{base64.b64encode(b''.join(path)).decode()}"
                for i, path in enumerate(paths)
            ]
        return out

    def batch_headers(self, values: Sequence[bytes]) -> list[list[tuple[str, str]]]:
        """:meth:`headers` for values written together, signed as one batch."""
        return [
            [(SIGNER_HEADER, self.service), (SIGNATURE_HEADER, sig)]
            for sig in self.sign_batch(values)
        ]


def _even_chunks(count: int, chunks: int) -> list[tuple[int, int]]:
    """``count`` items in ``chunks`` runs whose lengths differ by at most one."""
    if not chunks:
        return []
    size, extra = divmod(count, chunks)
    bounds, start = [], 0
    for n in range(chunks):
        end = start + size + (n < extra)
        bounds.append((start, end))
        start = end
    return bounds


def merkle_leaf(value: bytes) -> bytes:
    """RFC 9162's leaf hash: SHA-256 of 0x00 and the value."""
    return hashlib.sha256(b"\x00" + value).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_tree(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root of RFC 9162's tree over ``leaves`` (at least one), and each leaf's
    inclusion proof: the sibling hashes from the leaf up to the root."""
    paths: list[list[bytes]] = [[] for _ in leaves]

    def build(lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return leaves[lo]
        split = lo + (1 << ((hi - lo - 1).bit_length() - 1))  # largest power of 2 < n
        left, right = build(lo, split), build(split, hi)
        for i in range(lo, split):
            paths[i].append(right)
        for i in range(split, hi):
            paths[i].append(left)
        return _node(left, right)

    return build(0, len(leaves)), paths


def merkle_root(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes | None:
    """The root that ``path`` proves ``leaf`` (at ``index`` of ``size``) under, or None
    when the proof cannot belong to such a tree (RFC 9162, section 2.1.3.2)."""
    if not 0 <= index < size:
        return None
    fn, sn, root = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            root = _node(sibling, root)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            root = _node(root, sibling)
        fn >>= 1
        sn >>= 1
    return root if sn == 0 else None


def batch_message(size: int, root: bytes) -> bytes:
    """The bytes a batch signature signs."""
    return _BATCH_TAG + size.to_bytes(4, "big") + root


def record_digest(public_key: bytes, signer: str, signature: str, value: bytes) -> bytes:
    """SHA-256 of everything one Ed25519 verdict depends on: the signer's raw public key,
    the signer and signature headers and the exact record value bytes.

    Two records with the same digest get the same answer from :meth:`PublicKeys.verify`,
    so a verdict stored under this digest (the audit store keeps one per record it
    ingested) may stand in for re-checking exactly those bytes, and no others. The
    lengths are framed, so no shift of bytes between the fields gives the same digest.
    """
    return signer_digest(digest_prefix(public_key, signer), signature, value)


def digest_prefix(public_key: bytes, signer: str) -> bytes:
    """The part of :func:`record_digest`'s input fixed by the signer (a replay keeps one
    per signer and hashes only the rest per record)."""
    name = signer.encode("utf-8", "surrogatepass")
    return b"".join(
        (
            _VERDICT_TAG,
            len(public_key).to_bytes(4, "big"),
            public_key,
            len(name).to_bytes(4, "big"),
            name,
        )
    )


def signer_digest(prefix: bytes, signature: str, value: bytes) -> bytes:
    """:func:`record_digest` from the signer's :func:`digest_prefix`."""
    return _digest_rest(hashlib.sha256(prefix), signature, value)


def digest_after(started: hashlib._Hash, signature: str, value: bytes) -> bytes:
    """:func:`signer_digest` from ``hashlib.sha256(prefix)`` (copied, never changed):
    a replay hashes each signer's prefix once, not once per record."""
    return _digest_rest(started.copy(), signature, value)


def _digest_rest(digest: hashlib._Hash, signature: str, value: bytes) -> bytes:
    sig = signature.encode("utf-8", "surrogatepass")
    digest.update(len(sig).to_bytes(4, "big") + sig)
    digest.update(value)
    return digest.digest()


def verdict_mac_key(signer: Signer) -> bytes:
    """A secret derived from a service's private key, for MACs over the verdicts it stores.

    Whoever may only write to the database cannot make a stored verdict that a replay
    accepts: the replay recomputes the MAC with the same secret, read from the keys
    folder, and ignores (re-checks) every verdict whose MAC does not match.
    """
    return hashlib.sha256(_MAC_KEY_TAG + bytes(signer.key)).digest()


def verdict_mac(mac_key: bytes, event_id: bytes, record_hash: bytes, valid: bool) -> bytes:
    """A MAC binding a verdict (event id, record digest, answer) to the MAC key: keyed
    BLAKE2b (RFC 7693's MAC mode), 32 bytes; a replay checks one per stored verdict."""
    body = event_id + record_hash + (b"\x01" if valid else b"\x00")
    return hashlib.blake2b(body, key=mac_key, digest_size=32).digest()


def key_fingerprint(public_key: bytes) -> bytes:
    """SHA-256 of a raw public key: names the key a stored verdict was computed with."""
    return hashlib.sha256(public_key).digest()


class PublicKeys:
    """The registry of public keys (``shared.messaging.keyring``): each signer's keys and
    when each was valid."""

    def __init__(
        self, keys: Mapping[str, bytes | Sequence[KeyEntry]], path: Path | None = None
    ) -> None:
        """``keys``: each signer's raw 32-byte Ed25519 public key (valid at all times), or
        its registry entries. ``path``: the registry file, for :meth:`refresh`."""
        self._entries: dict[str, tuple[KeyEntry, ...]] = {
            name: (KeyEntry(value, datetime.min.replace(tzinfo=UTC)),)
            if isinstance(value, bytes)
            else tuple(value)
            for name, value in keys.items()
        }
        self._sodium = {
            entry.key: nacl.signing.VerifyKey(entry.key)
            for entries in self._entries.values()
            for entry in entries
        }
        self._path = path
        self._stamp = _stamp(path)
        # (key, signature, size, root) -> the Ed25519 answer: the records of one batch
        # share it, so the signature is checked once per batch, not once per record.
        self._roots: dict[tuple[bytes, bytes, int, bytes], bool] = {}

    @classmethod
    def load(cls, path: Path) -> PublicKeys:
        """The registry file at ``path`` (a folder means its ``registry.json``); raises
        :class:`SigningKeyError` when there is none."""
        if path.is_dir():
            path = path / "registry.json"
        return cls(read_registry(path), path)

    @classmethod
    def load_or_empty(cls, path: Path) -> PublicKeys:
        """:meth:`load`, or an empty registry when there is none yet (the audit, which
        only observes, reports every signer unknown rather than refuse to start)."""
        try:
            return cls.load(path)
        except SigningKeyError:
            return cls({}, path if path.suffix else path / "registry.json")

    def refresh(self) -> bool:
        """Re-read the registry when its file changed since it was read (a key added or
        rotated meanwhile); whether it did."""
        stamp = _stamp(self._path)
        if self._path is None or stamp == self._stamp or stamp is None:
            return False
        fresh = PublicKeys.load(self._path)
        self._entries, self._sodium, self._stamp = fresh._entries, fresh._sodium, stamp
        self._roots.clear()
        return True

    def raw(self, signer: str) -> bytes | None:
        """The signer's public key material: its raw 32-byte key, or every key of it in
        registry order when it has several (so a digest over it changes with a
        rotation); ``None`` when the registry has none."""
        entries = self._entries.get(signer)
        return b"".join(e.key for e in entries) if entries else None

    def entries(self, signer: str) -> tuple[KeyEntry, ...]:
        """The signer's keys with their validity, in registry order (none when unknown)."""
        return self._entries.get(signer, ())

    def signers(self) -> frozenset[str]:
        return frozenset(self._entries)

    def knows(self, signer: str) -> bool:
        """Whether the registry has any key of ``signer``."""
        return signer in self._entries

    def verify(
        self, signer: str, value: bytes, signature_b64: str, at: datetime | None = None
    ) -> bool:
        """Whether ``signer`` signed ``value`` (alone, or as part of a batch) with one of
        its keys valid at ``at`` (any of its keys when ``at`` is None)."""
        for entry in self._entries.get(signer, ()):
            if at is not None and not _valid_at(entry, at):
                continue
            key = self._sodium[entry.key]
            if signature_b64.startswith(BATCH_PREFIX):
                if self._verify_batched(entry.key, key, value, signature_b64):
                    return True
                continue
            try:
                key.verify(value, base64.b64decode(signature_b64, validate=True))
            except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
                continue
            return True
        return False

    def _verify_batched(
        self, raw: bytes, key: nacl.signing.VerifyKey, value: bytes, header: str
    ) -> bool:
        parts = header[len(BATCH_PREFIX) :].split(".")
        if len(parts) != 4 or not all(p.isascii() and p.isdigit() for p in parts[:2]):
            return False
        try:
            index, size = int(parts[0]), int(parts[1])
            signature = base64.b64decode(parts[2], validate=True)
            proof = base64.b64decode(parts[3], validate=True)
        except (ValueError, binascii.Error):
            return False
        if not 0 < size < 2**32 or len(proof) % _HASH:
            return False
        path = [proof[i : i + _HASH] for i in range(0, len(proof), _HASH)]
        root = merkle_root(index, size, merkle_leaf(value), path)
        if root is None:
            return False
        checked = (raw, signature, size, root)
        answer = self._roots.get(checked)
        if answer is None:
            try:
                key.verify(batch_message(size, root), signature)
                answer = True
            except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
                answer = False
            if len(self._roots) >= _ROOT_CACHE:
                self._roots.clear()
            self._roots[checked] = answer
        return answer


def _stamp(path: Path | None) -> tuple[int, int] | None:
    try:
        st = path.stat() if path is not None else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ino) if st else None


def _valid_at(entry: KeyEntry, at: datetime) -> bool:
    return entry.valid_at(at if at.tzinfo else at.replace(tzinfo=UTC))


if __name__ == "__main__":
    sys.exit(main())
