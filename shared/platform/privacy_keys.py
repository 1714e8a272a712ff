"""The centre's privacy secret on disk: made once (``onedoor-admin privacy-key``, the local
stack), read by intake and the departments (shared.contracts.sealing.CentreSecret)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from shared.contracts.sealing import CentreSecret
from shared.platform.secret_files import SecretFileError, read_secret


def generate_privacy_key(path: Path) -> bool:
    """Create the secret at ``path`` (mode 0600); False when it exists (never
    overwritten: a new secret would give every person a new pseudonym and orphan every
    data key)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_bytes(32).hex() + "\n")
    return True


def load_centre_secret(path: Path) -> CentreSecret:
    """The secret in ``path``.

    Raises:
        SecretFileError: missing, too open, or not hex (the message names the fix).
    """
    try:
        return CentreSecret.from_hex(read_secret(path, "privacy key").get_secret_value())
    except SecretFileError as exc:
        raise SecretFileError(
            f"{exc}; create it with onedoor-admin privacy-key --path {path} "
            "(or mount it: ONEDOOR_PRIVACY_KEY_FILE)"
        ) from None
    except ValueError as exc:
        raise SecretFileError(f"privacy key file {path}: {exc}") from None
