"""Files that hold secrets (signing keys, the token key, Kafka passwords): only their owner
may read them."""

from __future__ import annotations

import functools
import stat
from pathlib import Path

from pydantic import SecretStr


def shared_mode(path: Path) -> int | None:
    """The file's permission bits when others than its owner may use it (a key file that
    must be refused), else None.

    Allowed: no access for group or others (0600, 0400); or, for a file owned by root, read
    for its group and nothing more (0640, 0440). That second form is how Kubernetes mounts
    a Secret for a non-root container (owner root, group the pod's fsGroup), and the rule
    PostgreSQL applies to its own key file.

    Raises:
        FileNotFoundError: there is no such file.
    """
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    return mode if refused(mode, info.st_uid) else None


def refused(mode: int, owner: int) -> bool:
    """Whether a secret file of these permission bits and this owner is too open."""
    if owner == 0:
        return bool(mode & (stat.S_IWGRP | stat.S_IXGRP | stat.S_IRWXO))
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


class SecretFileError(RuntimeError):
    """A secret file that is missing or that others may read; the message says the fix."""


@functools.lru_cache(maxsize=64)
def read_secret(path: Path) -> SecretStr:
    """The secret held in ``path`` (surrounding whitespace stripped), read once per process.

    Raises:
        SecretFileError: no such file, an empty one, or one others than its owner may use
            (:func:`shared_mode`).
    """
    try:
        mode = shared_mode(path)
    except FileNotFoundError:
        raise SecretFileError(
            f"no secret file at {path}; the local stack makes it (`python -m deploy.stack up`),"
            " a deployment mounts it"
        ) from None
    if mode is not None:
        raise SecretFileError(f"{path} is readable by others (mode {mode:o}); run chmod 600 {path}")
    value = path.read_text().strip()
    if not value:
        raise SecretFileError(f"the secret file {path} is empty")
    return SecretStr(value)
