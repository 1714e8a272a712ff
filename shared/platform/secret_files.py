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


class SecretFileError(ValueError):
    """A secret file (a password) is missing, empty or readable by others; the message
    names the file and the fix, never the secret. Not an OSError: start-up's retry loop,
    which waits for a database or broker coming up, must not wait for a file."""


@functools.lru_cache(maxsize=64)
def read_secret(path: Path, what: str = "secret") -> SecretStr:
    """The secret held in ``path`` (one line; surrounding whitespace dropped), read once
    per process.

    Refused when others than its owner may use the file (:func:`shared_mode`): an
    operator mounts one secret per container, readable by its owner, or by the pod's
    group for a Kubernetes ``fsGroup`` mount of a root-owned file.

    Raises:
        SecretFileError: the file is missing, unreadable, empty or too open.
    """
    try:
        mode = shared_mode(path)
        if mode is not None:
            raise SecretFileError(
                f"{what} file {path} has mode {mode:o}: others may read it. "
                f"Run chmod 600 {path} (or mount the secret with defaultMode 0400)."
            )
        value = path.read_text().strip()
    except OSError as exc:
        raise SecretFileError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if not value:
        raise SecretFileError(f"the {what} file {path} is empty")
    return SecretStr(value)
