"""Personal fields on the log: sealed per person, referred to by a pseudonym.

Events never carry a person's name, ID number or phone in clear. Each applicant gets:

- a **subject reference** (``applicant_ref``): ``s1-`` and 32 hex digits of
  HMAC-SHA256(centre secret, normalised ID number). It is stable for one person, says
  nothing by itself, and is what outcomes, the audit's subject checks, statistics and
  the departments' own records key on;
- a **data key** (AES-256, one per person, held only in intake's database, ``key_id``
  names it): each personal field travels as ``v1.`` + base64url(nonce, ciphertext and
  tag) of AES-256-GCM under it, with the case id, the field name and the key id as
  associated data (a token copied into another case or field does not open).

Erasing a person deletes their data key (``onedoor-admin erase``): every sealed copy
on the log, in dead-letter queues and in the audit's store stays byte for byte what it
was (hash chains and signatures still hold) but can no longer be opened.

Records written before sealing existed are upcast on read (shared.contracts.events):
their clear values become ``plain.`` tokens, their reference ``legacy-`` + SHA-256 of
the ID number (computed from the record alone, so a replay upcasts them the same way).

Pure functions only: where keys live and how they are fetched is intake's and the
department SDK's business.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from typing import Final
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PERSONAL_FIELDS: Final = ("name", "id_number", "phone")
REF_PATTERN: Final = r"^(s1|legacy)-[0-9a-f]{32}$"
SEALED: Final = "v1."
PLAIN: Final = "plain."  # only ever made by an upcaster, for records from before sealing
KEY_BYTES: Final = 32
_NONCE = 12


class SealError(ValueError):
    """A sealed field could not be opened: its key is gone (erased) or it was altered."""


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=purpose).derive(secret)


class CentreSecret:
    """The centre's privacy secret (one file, ``Settings.privacy_key_path()``), and the
    two keys derived from it: the pepper of subject references and the key that wraps
    data keys at rest (so a copy of intake's database alone opens nothing)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the privacy secret must hold at least 32 bytes")
        self._pepper = _derive(secret, b"onedoor subject reference v1")
        self._wrap = AESGCM(_derive(secret, b"onedoor data key wrap v1"))

    @classmethod
    def from_hex(cls, text: str) -> CentreSecret:
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError:
            raise ValueError("the privacy key file must hold 64 or more hex digits") from None

    def subject_ref(self, id_number: str) -> str:
        """The person's (or company's) stable pseudonym."""
        mac = hmac.new(self._pepper, normalise(id_number).encode(), hashlib.sha256)
        return "s1-" + mac.hexdigest()[:32]

    def wrap(self, ref: str, key: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._wrap.encrypt(nonce, key, ref.encode())

    def unwrap(self, ref: str, wrapped: bytes) -> bytes:
        try:
            return self._wrap.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], ref.encode())
        except InvalidTag:
            raise SealError(f"the data key of {ref} does not open with this secret") from None


def normalise(id_number: str) -> str:
    return id_number.strip().upper()


def legacy_ref(id_number: str) -> str:
    """The reference an upcaster gives a record from before sealing (no secret needed:
    the record itself holds the ID number in clear)."""
    return "legacy-" + hashlib.sha256(normalise(id_number).encode()).hexdigest()[:32]


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def _aad(case_id: UUID, field: str, key_id: UUID) -> bytes:
    return f"{case_id}|{field}|{key_id}".encode()


def seal(key: bytes, key_id: UUID, case_id: UUID, field: str, value: str) -> str:
    """``value`` sealed for ``field`` of ``case_id`` under the person's data key."""
    nonce = os.urandom(_NONCE)
    box = AESGCM(key).encrypt(nonce, value.encode(), _aad(case_id, field, key_id))
    return SEALED + base64.urlsafe_b64encode(nonce + box).decode()


def open_sealed(key: bytes | None, key_id: UUID, case_id: UUID, field: str, token: str) -> str:
    """The clear value of a sealed token (``key``: None when the person was erased).

    Raises:
        SealError: the key is gone, or the token does not open under it.
    """
    if token.startswith(PLAIN):
        return token[len(PLAIN) :]
    if key is None:
        raise SealError(f"{field}: the applicant's data key is erased")
    try:
        raw = base64.urlsafe_b64decode(token.removeprefix(SEALED))
        value = AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], _aad(case_id, field, key_id))
    except (InvalidTag, binascii.Error, ValueError):
        raise SealError(f"{field}: the sealed value does not open with its key") from None
    return value.decode()
