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
