"""Signing keys as configuration: each service's private key, and the registry of
public keys every verifier trusts.

The registry is one JSON file (``ONEDOOR_KEY_REGISTRY``, by default ``registry.json``
in ``ONEDOOR_KEYS_DIR``) naming, per signer, its public keys (base64 raw Ed25519) and
when each was valid::

    {"version": 1, "signers": {"router": [
        {"key": "q2f...=", "valid_from": "2026-12-01T00:00:00+00:00", "valid_until": null}
    ]}}

A record verifies with a key of its signer that was valid at the event's
``occurred_at`` (``valid_from <= occurred_at < valid_until``). Rotation closes the old
key's validity (after a grace period, for replicas still running with it) and adds a new
one: what the old key signed before still verifies, what it signs afterwards does not.

A service holds only its own private key: ``<keys dir>/<service>.key`` (raw 32-byte
seed, mode 0600), or the file ``ONEDOOR_SIGNING_KEY_FILE`` names. A missing key, or one
readable by group or others, stops start-up; keys are made only by ``onedoor-keys``.
Nothing here logs or prints key material.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nacl.signing

from shared.platform.secret_files import shared_mode

REGISTRY_FILE = "registry.json"
# Validity of a key registered for a private key made before the registry existed: it
# may have signed anything already on the log.
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_GRACE = timedelta(hours=1)


class SigningKeyError(LookupError):
    """A key file or the registry is missing, unreadable or unsafe; the message says
    how to fix it."""


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One public key of a signer and the time it was valid for."""

    key: bytes  # raw 32-byte Ed25519 public key
    valid_from: datetime
    valid_until: datetime | None = None  # open

    def valid_at(self, at: datetime) -> bool:
        return self.valid_from <= at and (self.valid_until is None or at < self.valid_until)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": base64.b64encode(self.key).decode(),
            "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> KeyEntry:
        key = base64.b64decode(raw["key"], validate=True)
        if len(key) != 32:
            raise ValueError("a public key is 32 bytes")
        until = raw.get("valid_until")
        return cls(key, _utc(raw["valid_from"]), _utc(until) if until else None)


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


Registry = dict[str, list[KeyEntry]]


def registry_path(keys_dir: Path, registry: Path | None = None) -> Path:
    """The registry file: ``registry`` when set, else ``registry.json`` in ``keys_dir``."""
    return registry or keys_dir / REGISTRY_FILE


def read_registry(path: Path) -> Registry:
    """The registry at ``path`` (a folder means its ``registry.json``)."""
    if path.is_dir():
        path = path / REGISTRY_FILE
    try:
        document = json.loads(path.read_text())
        return {
            signer: [KeyEntry.from_json(e) for e in entries]
            for signer, entries in document["signers"].items()
        }
    except FileNotFoundError:
        raise SigningKeyError(
            f"no key registry at {path}; run onedoor-keys generate SERVICE... "
            "(it writes the keys and the registry)"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise SigningKeyError(f"key registry {path} is malformed: {exc}") from None


def write_registry(path: Path, registry: Registry) -> None:
    """Replace the registry atomically (readers see the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "version": 1,
        "signers": {s: [e.to_json() for e in registry[s]] for s in sorted(registry)},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialises writers of one registry (two generate runs at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def private_key_path(keys_dir: Path, service: str) -> Path:
    return keys_dir / f"{service}.key"


def load_private_key(path: Path, service: str) -> nacl.signing.SigningKey:
    """The service's private key from ``path``; refuses a missing key and one that group
    or others may read, saying how to fix it."""
    try:
        mode = shared_mode(path)
    except FileNotFoundError:
        raise SigningKeyError(
            f"no signing key for {service} at {path}; run onedoor-keys generate {service}"
        ) from None
    if mode is not None:
        raise SigningKeyError(
            f"signing key {path} is accessible by group or others (mode "
            f"{mode:04o}); run chmod 600 {path}"
        )
    seed = path.read_bytes()
    if len(seed) != 32:
        raise SigningKeyError(f"signing key {path} is not a raw 32-byte Ed25519 seed")
    return nacl.signing.SigningKey(seed)


def _write_private(path: Path, key: nacl.signing.SigningKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(bytes(key))  # the raw 32-byte seed
    os.replace(tmp, path)


def generate(
    keys_dir: Path,
    service: str,
    *,
    registry: Path | None = None,
    rotate: bool = False,
    grace: timedelta = DEFAULT_GRACE,
    now: datetime | None = None,
) -> Path:
    """Make sure ``service`` has a private key and its public key is in the registry.

    Without ``rotate`` an existing key is kept (and registered if it is not yet, valid
    since the beginning: it may have signed anything already on the log). With
    ``rotate`` a new key replaces the private key file, valid from ``now``; the old
    keys' validity ends ``grace`` after ``now``, so replicas still running with the old
    key keep being trusted until they restart. Returns the private key's path."""
    now = now or datetime.now(UTC)
    path = registry_path(keys_dir, registry)
    private = private_key_path(keys_dir, service)
    with _locked(path):
        entries: Registry = read_registry(path) if path.exists() else {}
        mine = entries.setdefault(service, [])
        if private.exists() and not rotate:
            public = bytes(load_private_key(private, service).verify_key)
            if not any(e.key == public for e in mine):
                mine.append(KeyEntry(public, _BEGINNING))
        else:
            if rotate:
                end = now + grace
                mine[:] = [
                    KeyEntry(e.key, e.valid_from, end)
                    if e.valid_until is None or e.valid_until > end
                    else e
                    for e in mine
                ]
            key = nacl.signing.SigningKey.generate()
            _write_private(private, key)
            mine.append(KeyEntry(bytes(key.verify_key), now))
        write_registry(path, entries)
    return private


def generate_all(keys_dir: Path, services: Sequence[str], *, registry: Path | None = None) -> Path:
    """:func:`generate` for each service (a test's or the local stack's keys); returns
    the registry's path."""
    for service in services:
        generate(keys_dir, service, registry=registry)
    return registry_path(keys_dir, registry)


def main(argv: list[str] | None = None) -> int:
    """``onedoor-keys generate [--rotate] SERVICE...``: each service's private key (mode
    0600, kept when it exists) and its public key in the registry; ``--rotate`` replaces
    the keys, ending the old ones' validity after ``--grace-seconds``."""
    from shared.platform.settings import get_settings  # noqa: PLC0415 - CLI only

    parser = argparse.ArgumentParser(prog="onedoor-keys", description=main.__doc__)
    parser.add_argument("command", choices=["generate", "rotate"])
    parser.add_argument("services", nargs="+")
    parser.add_argument("--dir", type=Path, default=None, help="keys folder (ONEDOOR_KEYS_DIR)")
    parser.add_argument(
        "--registry", type=Path, default=None, help="registry file (ONEDOOR_KEY_REGISTRY)"
    )
    parser.add_argument("--rotate", action="store_true", help="same as the rotate command")
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=DEFAULT_GRACE.total_seconds(),
        help="how long a rotated key stays valid (restart its services within it)",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    keys_dir = args.dir or settings.keys_dir
    # --dir alone means that folder's own registry.json.
    registry = args.registry or (None if args.dir else settings.key_registry)
    rotate = args.rotate or args.command == "rotate"
    for service in args.services:
        try:
            path = generate(
                keys_dir,
                service,
                registry=registry,
                rotate=rotate,
                grace=timedelta(seconds=args.grace_seconds),
            )
        except SigningKeyError as exc:
            print(f"onedoor-keys: {exc}", file=sys.stderr)
            return 1
        print(f"{service}: {path} ({'rotated' if rotate else 'ready'})")
    print(f"registry: {registry_path(keys_dir, registry)}")
    return 0
