"""Files that hold secrets (signing keys, the token key): only their owner may read them."""

from __future__ import annotations

import stat
from pathlib import Path


def shared_mode(path: Path) -> int | None:
    """The file's permission bits when its group or others have any access to it (a key
    file that must be refused), else None.

    Raises:
        FileNotFoundError: there is no such file.
    """
    mode = stat.S_IMODE(path.stat().st_mode)
    return mode if mode & (stat.S_IRWXG | stat.S_IRWXO) else None


class SecretFileError(ValueError):
    """A secret file (a database password) is missing, empty or readable by others; the
    message names the file and the fix, never the secret."""


def read_secret(path: Path, what: str) -> str:
    """The secret held by ``path`` (one line; surrounding whitespace dropped).

    Refused when others may read the file: an operator mounts one secret per container,
    readable by its owner (and its group, for a Kubernetes ``fsGroup`` mount).

    Raises:
        SecretFileError: the file is missing, unreadable, empty or world-accessible.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & stat.S_IRWXO:
            raise SecretFileError(
                f"{what} file {path} has mode {mode:o}: others may read it. "
                f"Run chmod 600 {path} (or mount the secret with defaultMode 0400)."
            )
        secret = path.read_text().strip()
    except OSError as exc:
        raise SecretFileError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if not secret:
        raise SecretFileError(f"the {what} file {path} is empty")
    return secret
