"""Signed records for unit tests: one keys folder per test session holding a key of
every signer of the topology, and the registry over them."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from shared.contracts.events import Event
from shared.contracts.topology import OPERATOR, writer
from shared.messaging.consumer import Record
from shared.messaging.keyring import generate_all
from shared.messaging.signing import PublicKeys, Signer
from shared.messaging.testing import record_of, signer_for

SIGNERS = ("intake", "router", "hr_registration", "social_security", "audit", OPERATOR)


@functools.cache
def keys_dir() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="onedoor-test-keys-"))
    atexit.register(shutil.rmtree, folder, True)
    generate_all(folder, SIGNERS)
    return folder


@functools.cache
def signer(name: str) -> Signer:
    """``name``'s signer, registered in :func:`keys_dir`'s registry."""
    return signer_for(keys_dir(), name)


def registry() -> PublicKeys:
    """The registry as it is now (every signer made so far)."""
    return PublicKeys.load(keys_dir())


def signed(
    topic: str,
    event: Event | bytes,
    *,
    prefix: str,
    offset: int = 0,
    partition: int = 0,
    headers: tuple[tuple[str, bytes], ...] = (),
    by: str | None = None,
) -> Record:
    """A record on ``topic`` (deployed name) signed by ``by``, by default the writer the
    topology allows for it."""
    name = by or writer(topic.removeprefix(prefix)) or "nobody"
    return record_of(
        topic, event, offset=offset, partition=partition, headers=headers, signer=signer(name)
    )
