"""Files that hold secrets (signing keys, the token key): only their owner may read them."""

from __future__ import annotations

import stat
from pathlib import Path


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
