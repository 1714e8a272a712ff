"""The local stack's Kafka security: SASL listeners, the authorizer, principals and ACLs.

The broker runs as production does: clients must sign in (SASL; SCRAM-SHA-512 for the
services) and the KRaft ``StandardAuthorizer`` refuses what no ACL allows. Two principals
are the stack's own and are static, in the broker's JAAS configuration (SASL/PLAIN):
``broker`` (its own inter-broker and controller connections) and ``admin`` (provisioning:
SCRAM credentials, ACLs, test clean-up); both are super users and no service ever uses
them. Being static, they need nothing from the metadata log, so a data folder formatted
before SASL was turned on comes up unchanged. Every service, and the operator's DLQ
tool, is a SCRAM-SHA-512 principal named after it, created at ``up`` (or when a
department is added) through the AlterUserScramCredentials API, with ACLs computed from
the topology (``shared.messaging.acls``).

Passwords are random, made once into ``<data dir>/secrets/kafka/<principal>.password``
(mode 0600) and never printed; the broker's properties file that holds the two static
ones is mode 0600 too.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.contracts.topology import AUDIT, DEADLINES, INTAKE, ROUTER
from shared.messaging import acls, principals
from shared.platform.secret_files import read_secret
from shared.platform.settings import Settings

if TYPE_CHECKING:  # deploy.stack imports this module
    from deploy.stack import StackConfig
    from shared.platform.runtime import Topics

ADMIN = "admin"
BROKER = "broker"
MECHANISM = "SCRAM-SHA-512"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
_PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
_SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"


def secrets_dir(cfg: StackConfig) -> Path:
    return cfg.data_dir / "secrets" / "kafka"


def _static_passwords(cfg: StackConfig) -> dict[str, str]:
    paths = principals.ensure_password_files(secrets_dir(cfg), (ADMIN, BROKER))
    return {name: read_secret(path).get_secret_value() for name, path in paths.items()}


def listener_properties(cfg: StackConfig, node: int) -> list[str]:
    """The broker's listener, SASL and authorizer lines: clients on a SASL_PLAINTEXT
    listener (SCRAM-SHA-512 for the services, PLAIN for the static admin and broker),
    the controller listener on SASL/PLAIN with the broker's static principal."""
    pw = _static_passwords(cfg)
    port, controller = cfg.broker_port(node), cfg.controller_port(node)
    client_users = f'user_{BROKER}="{pw[BROKER]}" user_{ADMIN}="{pw[ADMIN]}"'
    me = f'username="{BROKER}" password="{pw[BROKER]}"'
    return [
        f"listeners=CLIENT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=CLIENT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "inter.broker.listener.name=CLIENT",
        f"sasl.enabled.mechanisms={MECHANISM},PLAIN",
        "sasl.mechanism.inter.broker.protocol=PLAIN",
        "sasl.mechanism.controller.protocol=PLAIN",
        f"listener.name.client.sasl.enabled.mechanisms={MECHANISM},PLAIN",
        f"listener.name.client.plain.sasl.jaas.config={_PLAIN} required {me} {client_users};",
        f"listener.name.client.{MECHANISM.lower()}.sasl.jaas.config={_SCRAM} required;",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        f"listener.name.controller.plain.sasl.jaas.config={_PLAIN} required {me}"
        f' user_{BROKER}="{pw[BROKER]}";',
        f"authorizer.class.name={AUTHORIZER}",
        f"super.users=User:{ADMIN};User:{BROKER}",
        "allow.everyone.if.no.acl.found=false",
    ]


def client_env(cfg: StackConfig) -> dict[str, str]:
    """What a service's process needs to reach this stack's broker as itself (its
    principal is its own name; its password is in the secrets folder)."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": cfg.bootstrap_servers,
        "ONEDOOR_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "ONEDOOR_KAFKA_SASL_MECHANISM": MECHANISM,
        "ONEDOOR_KAFKA_SECRETS_DIR": str(secrets_dir(cfg)),
    }


class _LoopbackPlain(logging.Filter):
    """Drops aiokafka's warning that PLAIN sends the password unencrypted: the stack's
    admin does so on purpose, on its 127.0.0.1 listener (production runs SASL_SSL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Sending username and password in the clear")


_QUIET = _LoopbackPlain()


def admin_settings(cfg: StackConfig, **overrides: Any) -> Settings:
    """Settings that connect as the stack's ``admin`` (provisioning, tests' own tools)."""
    return admin_at(cfg.bootstrap_servers, secrets_dir(cfg), **overrides)


def admin_at(bootstrap: str, secrets: Path, **overrides: Any) -> Settings:
    """Settings that connect as the ``admin`` of a stack launched elsewhere (the image
    check's infrastructure pod), its passwords in ``secrets``."""
    logging.getLogger("aiokafka.conn").addFilter(_QUIET)  # the same filter once
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_username=ADMIN,
        kafka_secrets_dir=secrets,
        **overrides,
    )


def as_admin(settings: Settings, cfg: StackConfig) -> Settings:
    """``settings`` connecting to this stack's broker as its ``admin`` (a stack tool:
    the audit drill writes forged records to every topic), unless they name a principal."""
    if settings.kafka_username:
        return settings
    admin = admin_settings(cfg)
    kafka = {k: v for k, v in admin.model_dump().items() if k.startswith("kafka_")}
    return settings.model_copy(update=kafka)


def env_of(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process connect as ``settings`` do (a CLI
    run by a test, as the test's own principal)."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "ONEDOOR_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "ONEDOOR_KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
        "ONEDOOR_KAFKA_SECRETS_DIR": str(settings.kafka_secrets_dir),
    }
    if settings.kafka_username:
        env["ONEDOOR_KAFKA_USERNAME"] = settings.kafka_username
    if settings.kafka_password_file:
        env["ONEDOOR_KAFKA_PASSWORD_FILE"] = str(settings.kafka_password_file)
    return env


def without_principal(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without a principal of its own: each service started with it connects as
    its own name (a shell's ONEDOOR_KAFKA_USERNAME must not make them all one)."""
    dropped = ("ONEDOOR_KAFKA_USERNAME", "ONEDOOR_KAFKA_PASSWORD_FILE")
    return {k: v for k, v in env.items() if k not in dropped}


@dataclass(frozen=True)
class KafkaAccess:
    """How a launcher reaches a broker: its tools as ``admin`` (a super user), the
    services it starts with ``client_env`` (each as itself), and where the principals'
    passwords are made (None: a broker without SASL, no principals to make)."""

    admin: Settings
    client_env: dict[str, str] = field(default_factory=dict)
    secrets: Path | None = None

    @classmethod
    def of(cls, cfg: StackConfig) -> KafkaAccess:
        return cls(admin_settings(cfg), client_env(cfg), secrets_dir(cfg))

    async def provision(self, prefix: str, departments: Iterable[str]) -> list[acls.Binding]:
        """:func:`provision` on this broker (nothing on a broker without SASL)."""
        if self.secrets is None:
            return []
        return await provision(self.admin, self.secrets, prefix, departments)

    async def unprovision(self, prefix: str) -> int:
        """Delete the ACLs of a throw-away namespace (a test's, a bench run's)."""
        if self.secrets is None:
            return 0
        return await principals.revoke_prefix(self.admin, prefix)


# --------------------------------------------------------------------------- ACLs


def _department(name: str) -> Any:
    """A department package's ``Department`` (its learners decide what it reads): under
    services/, or importable by its own name; a bare one when it cannot be imported."""
    from shared.department.adapter import Department  # noqa: PLC0415 - heavy, only here

    for module in (f"services.{name}.department", f"{name}.department"):
        try:
            found = getattr(importlib.import_module(module), "department", None)
        except ImportError:
            continue
        if isinstance(found, Department):
            return found
    return Department(name)


def service_topics(departments: Iterable[str]) -> dict[str, Topics]:
    """What each service of a deployment with these departments reads, writes and
    creates: the same derivation as its builder's."""
    # Imported here: the services' wiring is only needed to compute ACLs.
    from services.audit import main as audit  # noqa: PLC0415
    from services.deadlines import main as deadlines  # noqa: PLC0415
    from services.intake import main as intake  # noqa: PLC0415
    from services.router import main as router  # noqa: PLC0415
    from shared.department.adapter import department_topics  # noqa: PLC0415

    names = sorted(set(departments))
    topics = {
        INTAKE: intake.topics(names),
        ROUTER: router.topics(names),
        AUDIT: audit.topics(names),
        DEADLINES: deadlines.topics(names),
    }
    for name in names:
        topics[name] = department_topics(_department(name))
    return topics


def deployment_bindings(prefix: str, departments: Iterable[str]) -> list[acls.Binding]:
    names = sorted(set(departments))
    return acls.bindings(prefix, service_topics(names), names)


async def provision(
    admin: Settings, secrets: Path, prefix: str, departments: Iterable[str]
) -> list[acls.Binding]:
    """Each principal of a deployment with these departments (its password file, made
    when missing, and its SCRAM credential) and its ACLs on the topics under ``prefix``.
    Idempotent: run at every ``up``, by each test that runs services, and for a
    department added later. Returns the ACLs."""
    names = sorted(set(departments))
    granted = deployment_bindings(prefix, names)
    await principals.ensure_principals(
        admin, secrets, acls.principals([INTAKE, ROUTER, AUDIT, DEADLINES, *names])
    )
    await principals.grant(admin, granted)
    return granted


def catalogue_departments(env: Mapping[str, str] | None = None) -> list[str]:
    """The departments of the catalogue a deployment loads (services/ plus the folders
    of ONEDOOR_CATALOGUE_DIRS in ``env``)."""
    from services.catalogue import default_catalogue  # noqa: PLC0415

    env = dict(os.environ) if env is None else dict(env)
    dirs = [Path(d) for d in json.loads(env.get("ONEDOOR_CATALOGUE_DIRS", "[]"))]
    return sorted(default_catalogue(dirs).departments())
