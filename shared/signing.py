"""Ed25519 signatures on every event a service produces.

Each service has its own key pair in the keys folder (``ONEDOOR_KEYS_DIR``):
``<service>.key`` (private, raw 32 bytes, mode 0600) and ``<service>.pub`` (public,
raw 32 bytes). The public keys form the registry the audit service verifies against:
an outcome on ``dept.X.outcomes`` must be signed by X. The signature covers the exact
record value bytes and travels in the record headers.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nacl.exceptions
import nacl.signing
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

SIGNER_HEADER = "onedoor-signer"
SIGNATURE_HEADER = "onedoor-signature"
# Domain separation for record_digest: a verdict digest can never collide with a plain
# content hash of some record value.
_VERDICT_TAG = b"onedoor-signature-verdict/v1\x00"
_MAC_KEY_TAG = b"onedoor-verdict-mac-key/v1\x00"


class SigningKeyError(LookupError):
    """A key file is missing or unreadable."""


def generate_keys(keys_dir: Path, service: str, *, overwrite: bool = False) -> Path:
    """Create a key pair for ``service``; return the private key's path."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    private_path = keys_dir / f"{service}.key"
    if private_path.exists() and not overwrite:
        return private_path
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    (keys_dir / f"{service}.pub").write_bytes(
        key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return private_path


@dataclass(frozen=True)
class Signer:
    """Signs record values as one service."""

    service: str
    key: Ed25519PrivateKey
    # The same key in libsodium, which signs about 20% faster and verifies about 40%
    # faster than OpenSSL here; signatures are identical (Ed25519 is deterministic).
    _sodium: nacl.signing.SigningKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seed = self.key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        object.__setattr__(self, "_sodium", nacl.signing.SigningKey(seed))

    @classmethod
    def load(cls, keys_dir: Path, service: str, *, create: bool = True) -> Signer:
        """Load the service's key; with ``create``, make one on first start."""
        path = keys_dir / f"{service}.key"
        if not path.exists():
            if not create:
                raise SigningKeyError(f"no signing key for {service} at {path}; run onedoor-keys")
            generate_keys(keys_dir, service)
        return cls(service, Ed25519PrivateKey.from_private_bytes(path.read_bytes()))

    def sign(self, value: bytes) -> str:
        return base64.b64encode(self._sodium.sign(value).signature).decode()

    def headers(self, value: bytes) -> list[tuple[str, str]]:
        return [(SIGNER_HEADER, self.service), (SIGNATURE_HEADER, self.sign(value))]


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
    sig = signature.encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(prefix)
    digest.update(len(sig).to_bytes(4, "big") + sig)
    digest.update(value)
    return digest.digest()


def verdict_mac_key(signer: Signer) -> bytes:
    """A secret derived from a service's private key, for MACs over the verdicts it stores.

    Whoever may only write to the database cannot make a stored verdict that a replay
    accepts: the replay recomputes the MAC with the same secret, read from the keys
    folder, and ignores (re-checks) every verdict whose MAC does not match.
    """
    raw = signer.key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return hashlib.sha256(_MAC_KEY_TAG + raw).digest()


def verdict_mac(mac_key: bytes, event_id: bytes, record_hash: bytes, valid: bool) -> bytes:
    """A MAC binding a verdict (event id, record digest, answer) to the MAC key: keyed
    BLAKE2b (RFC 7693's MAC mode), 32 bytes; a replay checks one per stored verdict."""
    body = event_id + record_hash + (b"\x01" if valid else b"\x00")
    return hashlib.blake2b(body, key=mac_key, digest_size=32).digest()


def key_fingerprint(public_key: bytes) -> bytes:
    """SHA-256 of a raw public key: names the key a stored verdict was computed with."""
    return hashlib.sha256(public_key).digest()


class PublicKeys:
    """The registry of public keys: every ``*.pub`` in the keys folder."""

    def __init__(self, keys: dict[str, Ed25519PublicKey]) -> None:
        self._keys = keys
        self._raw = {
            name: key.public_bytes(Encoding.Raw, PublicFormat.Raw) for name, key in keys.items()
        }
        self._sodium = {name: nacl.signing.VerifyKey(raw) for name, raw in self._raw.items()}

    @classmethod
    def load(cls, keys_dir: Path) -> PublicKeys:
        keys = {
            p.stem: Ed25519PublicKey.from_public_bytes(p.read_bytes())
            for p in sorted(keys_dir.glob("*.pub"))
        }
        return cls(keys)

    def raw(self, signer: str) -> bytes | None:
        """The signer's raw 32-byte public key, or ``None`` when the registry has none."""
        return self._raw.get(signer)

    def signers(self) -> frozenset[str]:
        return frozenset(self._keys)

    def verify(self, signer: str, value: bytes, signature_b64: str) -> bool:
        key = self._sodium.get(signer)
        if key is None:
            return False
        try:
            key.verify(value, base64.b64decode(signature_b64, validate=True))
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            return False
        return True


def main(argv: list[str] | None = None) -> int:
    """``onedoor-keys generate SERVICE...``: create signing keys in the keys folder."""
    from shared.settings import get_settings  # noqa: PLC0415 - CLI only

    parser = argparse.ArgumentParser(prog="onedoor-keys", description=main.__doc__)
    parser.add_argument("command", choices=["generate"])
    parser.add_argument("services", nargs="+")
    parser.add_argument("--dir", type=Path, default=None, help="keys folder (ONEDOOR_KEYS_DIR)")
    parser.add_argument("--force", action="store_true", help="replace existing keys")
    args = parser.parse_args(argv)
    keys_dir = args.dir or get_settings().keys_dir
    for service in args.services:
        path = generate_keys(keys_dir, service, overwrite=args.force)
        print(f"{service}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
