"""Files that hold secrets (signing keys, the token key, Kafka passwords): only their owner
may read them."""

from __future__ import annotations

import functools
import stat
from pathlib import Path

from pydantic import SecretStr


def shared_mode(path: Path) -> int | None:
    """The file's permission bits when its group or others have any access to it (a key
    file that must be refused), else None.

    Raises:
        FileNotFoundError: there is no such file.
    """
    mode = stat.S_IMODE(path.stat().st_mode)
    return mode if mode & (stat.S_IRWXG | stat.S_IRWXO) else None


class SecretFileError(RuntimeError):
    """A secret file that is missing or that others may read; the message says the fix."""


@functools.lru_cache(maxsize=64)
def read_secret(path: Path) -> SecretStr:
    """The secret held in ``path`` (surrounding whitespace stripped), read once per process.

    Raises:
        SecretFileError: no such file, an empty one, or one its group or others may read.
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
