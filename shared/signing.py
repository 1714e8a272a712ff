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
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
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
        return base64.b64encode(self.key.sign(value)).decode()

    def headers(self, value: bytes) -> list[tuple[str, str]]:
        return [(SIGNER_HEADER, self.service), (SIGNATURE_HEADER, self.sign(value))]


class PublicKeys:
    """The registry of public keys: every ``*.pub`` in the keys folder."""

    def __init__(self, keys: dict[str, Ed25519PublicKey]) -> None:
        self._keys = keys

    @classmethod
    def load(cls, keys_dir: Path) -> PublicKeys:
        keys = {
            p.stem: Ed25519PublicKey.from_public_bytes(p.read_bytes())
            for p in sorted(keys_dir.glob("*.pub"))
        }
        return cls(keys)

    def verify(self, signer: str, value: bytes, signature_b64: str) -> bool:
        key = self._keys.get(signer)
        if key is None:
            return False
        try:
            key.verify(base64.b64decode(signature_b64, validate=True), value)
        except (InvalidSignature, ValueError):
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
