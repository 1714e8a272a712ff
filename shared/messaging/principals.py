"""Kafka principals and their ACLs, applied with the stack's admin principal.

aiokafka's admin client has no call for ACLs or SCRAM credentials, so the requests are
sent on its connection here: CreateAcls v1-v3 and DeleteAcls / DescribeAcls v1 (Kafka 4
accepts nothing older, KIP-896), and AlterUserScramCredentials v0. A SCRAM credential is
sent as the salted password (PBKDF2 of the password, a fresh salt, 8192 iterations):
the password itself never leaves this process.

Passwords live in ``<secrets dir>/<principal>.password`` files of mode 0600, made here
when missing (``ensure_password_files``): the local stack's, a test's, or a department
added later. A deployment mounts its own and runs :func:`upsert_scram_credentials` from
its provisioning step.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest_v1,
)
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)
from pydantic import SecretStr

from shared.messaging.acls import Binding, Operation, Resource
from shared.messaging.kafka import make_admin
from shared.platform.secret_files import read_secret
from shared.platform.settings import Settings

ANY = 1  # resource type, pattern type, operation, permission: "any" in a filter
LITERAL = 3
ALLOW = 3
ALL_HOSTS = "*"
SCRAM_ITERATIONS = 8192
_SCRAM = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}


class AclError(RuntimeError):
    """The brokers refused to create or delete an ACL or a credential."""


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]  # aiokafka.protocol is untyped
    API_KEY = 30

    def __init__(self, creations: list[tuple[Any, ...]]) -> None:
        self._rows = creations

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self._rows)


class _DeleteAcls(Request[DeleteAclsRequest_v1]):  # type: ignore[misc]  # aiokafka.protocol is untyped
    API_KEY = 31

    def __init__(self, filters: list[tuple[Any, ...]]) -> None:
        self._rows = filters

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class(self._rows)


class _DescribeAcls(Request[DescribeAclsRequest_v1]):  # type: ignore[misc]  # aiokafka.protocol is untyped
    """Every ACL (a filter of "any" everywhere)."""

    API_KEY = 29

    def build(self, request_struct_class: type[DescribeAclsRequest_v1]) -> DescribeAclsRequest_v1:
        return request_struct_class(ANY, None, ANY, None, None, ANY, ANY)


class _AlterScramResponse(Response):  # type: ignore[misc]  # aiokafka.protocol is untyped
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterScramRequest_v0(RequestStruct):  # type: ignore[misc]  # noqa: N801 - the protocol's naming
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterScramResponse
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterScram(Request[_AlterScramRequest_v0]):  # type: ignore[misc]  # aiokafka.protocol is untyped
    API_KEY = 51

    def __init__(self, upsertions: list[tuple[Any, ...]]) -> None:
        self._rows = upsertions

    def build(self, request_struct_class: type[_AlterScramRequest_v0]) -> _AlterScramRequest_v0:
        return request_struct_class([], self._rows, {})


async def _send(admin: AIOKafkaAdminClient, request: Request[Any]) -> Any:
    return await admin._send_request(request)


def _check(what: str, code: int, message: str | None) -> None:
    if code:
        raise AclError(f"{what}: {for_code(code).__name__} {message or ''}".strip())


def password_path(secrets_dir: Path, principal: str) -> Path:
    return secrets_dir / f"{principal}.password"


def ensure_password_files(secrets_dir: Path, principals: Iterable[str]) -> dict[str, Path]:
    """Each principal's password file, made (random, mode 0600) when missing."""
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths: dict[str, Path] = {}
    for principal in principals:
        path = password_path(secrets_dir, principal)
        if not path.exists():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another provisioner made it a moment ago: keep it
                continue
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32) + "\n")
        paths[principal] = path
    return paths


def salted_password(password: str, salt: bytes, mechanism: str, iterations: int) -> bytes:
    """SCRAM's SaltedPassword: Hi(password, salt, i), i.e. PBKDF2-HMAC of the hash."""
    return hashlib.pbkdf2_hmac(_SCRAM[mechanism][1], password.encode(), salt, iterations)


async def upsert_scram_credentials(
    admin_settings: Settings,
    passwords: Mapping[str, SecretStr],
    mechanism: str = "SCRAM-SHA-512",
) -> None:
    """Create or replace each principal's SCRAM credential (idempotent: a principal whose
    password did not change gets a fresh salt and still signs in)."""
    if not passwords:
        return
    upsertions: list[tuple[Any, ...]] = []
    for name, password in sorted(passwords.items()):
        salt = secrets.token_bytes(32)
        salted = salted_password(password.get_secret_value(), salt, mechanism, SCRAM_ITERATIONS)
        upsertions.append((name, _SCRAM[mechanism][0], SCRAM_ITERATIONS, salt, salted, {}))
    admin = make_admin(admin_settings)
    await admin.start()
    try:
        response = await _send(admin, _AlterScram(upsertions))
    finally:
        await admin.close()
    for user, code, message, _tags in response.results:
        _check(f"SCRAM credential of {user}", code, message)


async def ensure_principals(
    admin_settings: Settings, secrets_dir: Path, principals: Iterable[str]
) -> None:
    """Each principal's password file (made when missing) and its SCRAM credential."""
    paths = ensure_password_files(secrets_dir, principals)
    await upsert_scram_credentials(
        admin_settings, {name: read_secret(path) for name, path in paths.items()}
    )


def _row(binding: Binding) -> tuple[int, str, int, str, str, int, int]:
    return (
        int(binding.resource),
        binding.name,
        LITERAL,
        f"User:{binding.principal}",
        ALL_HOSTS,
        int(binding.operation),
        ALLOW,
    )


async def grant(admin_settings: Settings, bindings: Iterable[Binding]) -> int:
    """Create these ALLOW ACLs (an existing one is left as it is); return how many."""
    rows = [_row(b) for b in bindings]
    if not rows:
        return 0
    admin = make_admin(admin_settings)
    await admin.start()
    try:
        response = await _send(admin, _CreateAcls(rows))
    finally:
        await admin.close()
    for row, (code, message) in zip(rows, response.creation_responses, strict=True):
        _check(f"ACL {row}", code, message)
    return len(rows)


async def acls(admin_settings: Settings, prefix: str = "") -> list[Binding]:
    """The literal ALLOW ACLs of user principals on resources whose name starts with
    ``prefix`` (every one with an empty prefix)."""
    admin = make_admin(admin_settings)
    await admin.start()
    try:
        response = await _send(admin, _DescribeAcls())
    finally:
        await admin.close()
    _check("describing ACLs", response.error_code, response.error_message)
    found: list[Binding] = []
    for resource, name, pattern, entries in response.resources:
        if pattern != LITERAL or not name.startswith(prefix):
            continue
        if resource not in (Resource.TOPIC, Resource.GROUP):
            continue
        for principal, _host, operation, permission in entries:
            if permission == ALLOW and principal.startswith("User:") and operation in _OPS:
                found.append(
                    Binding(
                        principal.removeprefix("User:"),
                        Resource(resource),
                        name,
                        Operation(operation),
                    )
                )
    return sorted(found)


_OPS = {int(op) for op in Operation}


async def revoke(admin_settings: Settings, bindings: Iterable[Binding]) -> int:
    """Delete these ACLs; return how many the brokers deleted."""
    rows = [_row(b) for b in bindings]
    if not rows:
        return 0
    admin = make_admin(admin_settings)
    await admin.start()
    try:
        response = await _send(admin, _DeleteAcls(rows))
    finally:
        await admin.close()
    deleted = 0
    for code, message, matching in response.filter_responses:
        _check("deleting ACLs", code, message)
        deleted += len(matching)
    return deleted


async def revoke_prefix(admin_settings: Settings, prefix: str) -> int:
    """Delete every ACL on resources whose name starts with ``prefix`` (a test's or a
    drill's namespace); refuses an empty prefix, which would strip a deployment."""
    if not prefix:
        raise ValueError("refusing to revoke ACLs without a namespace prefix")
    return await revoke(admin_settings, await acls(admin_settings, prefix))
