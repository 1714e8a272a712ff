"""``onedoor-migrate``: every service's schema migrations and every topic of the topology,
once, before the services start (the Kubernetes Job ``onedoor-migrate``).

    onedoor-migrate [NAME ...] [--role-passwords DIR] [--attempts N]

NAME is a service or department (default: intake, router, the audit and every department
of the catalogue, ONEDOOR_CATALOGUE_DIRS included). Each is migrated as its own
PostgreSQL role, ``onedoor_<name>``, the owner of its schema, with the password
``DIR/onedoor_<name>.password`` (the layout ``deploy/dbroles.py`` writes; default
ONEDOOR_DB_SECRETS_DIR), and its topics are created as its own Kafka principal (the
brokers' ACLs let each create only its own; the passwords in ONEDOOR_KAFKA_SECRETS_DIR).
Idempotent: a second run applies nothing and creates nothing. A department whose package
is not installed in this image is skipped (it migrates at its own start).

Exit codes: 0 done (or nothing to do); 1 a migration failed, a dependency stayed away
past ``--attempts``, or a topic could not be created; 2 a usage or settings error (the
message says the fix). The services started with ``ONEDOOR_MIGRATE_AT_START=false`` wait
for what this made (``shared.platform.runtime.wait_for_migrate_job``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog
from aiokafka.errors import KafkaError

from services.catalogue import default_catalogue
from shared.contracts.topology import AUDIT, DEADLINES, INTAKE, ROUTER
from shared.messaging import MESSAGING_MIGRATIONS
from shared.messaging.kafka import KafkaPrincipalError
from shared.messaging.topics import TopicProvisioningError, ensure_topics
from shared.platform.db import MigrationError, migrate_dsn
from shared.platform.limits import LimitsError
from shared.platform.logs import configure_logging
from shared.platform.runtime import Topics, wait_for_dependency
from shared.platform.secret_files import SecretFileError
from shared.platform.settings import ConfigError, Settings, get_settings

if TYPE_CHECKING:
    from shared.department.adapter import Department


class MigrateError(RuntimeError):
    """A usage or settings error; the message says the fix (exit 2)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What one service owns: its schema's migrations and the topics it creates."""

    name: str
    migrations: tuple[Path, ...]
    topics: Topics


def plans(departments: Iterable[str], only: Sequence[str] = ()) -> tuple[list[Plan], list[str]]:
    """The plan of each service of a deployment with these departments (``only``: just
    those named); and the departments skipped (not installed here)."""
    from services.audit import main as audit  # noqa: PLC0415 - each service's wiring
    from services.audit import store  # noqa: PLC0415
    from services.deadlines import main as deadlines  # noqa: PLC0415
    from services.intake import main as intake  # noqa: PLC0415
    from services.router import main as router  # noqa: PLC0415
    from shared.department.adapter import SDK_MIGRATIONS, department_topics  # noqa: PLC0415

    names = sorted(set(departments))
    found = [
        Plan(INTAKE, tuple(intake.MIGRATIONS), intake.topics(names)),
        Plan(ROUTER, (router.MIGRATIONS,), router.topics(names)),
        Plan(AUDIT, (store.MIGRATIONS_DIR,), audit.topics(names)),
        Plan(DEADLINES, (deadlines.MIGRATIONS,), deadlines.topics(names)),
    ]
    skipped: list[str] = []
    for name in names:
        department = _department(name)
        if department is None:
            skipped.append(name)
            continue
        found.append(
            Plan(name, (SDK_MIGRATIONS, *department.migrations), department_topics(department))
        )
    if only:
        unknown = sorted(set(only) - {p.name for p in found} - set(skipped))
        if unknown:
            known = ", ".join(p.name for p in found)
            raise MigrateError(f"not a service of this deployment: {', '.join(unknown)} ({known})")
        found = [p for p in found if p.name in only]
    return found, skipped


def _department(name: str) -> Department | None:
    from shared.department.adapter import Department  # noqa: PLC0415

    for module in (f"services.{name}.department", f"{name}.department"):
        try:
            found = getattr(importlib.import_module(module), "department", None)
        except ImportError:
            continue
        if isinstance(found, Department):
            return found
    return None


def settings_of(settings: Settings, name: str, role_passwords: Path) -> Settings:
    """``settings`` as service ``name``: its Kafka principal, its database role and that
    role's password file."""
    role = f"onedoor_{name}"
    return settings.for_service(name).model_copy(
        update={
            "database_user": role,
            "database_password_file": role_passwords / f"{role}.password",
        }
    )


async def migrate_all(
    settings: Settings, found: Sequence[Plan], role_passwords: Path, attempts: int
) -> list[str]:
    """Migrate each plan's schema and create its topics; return one line per service."""
    log = structlog.get_logger("migrate")
    lines: list[str] = []
    for plan in found:
        own = settings_of(settings, plan.name, role_passwords)
        directories = [MESSAGING_MIGRATIONS, *plan.migrations]
        step: Callable[[], Awaitable[Any]] = functools.partial(
            migrate_dsn, own.dsn(), plan.name, directories
        )
        applied = await wait_for_dependency(step, log, attempts=attempts)
        step = functools.partial(ensure_topics, own, plan.topics.provisions)
        created = await wait_for_dependency(step, log, attempts=attempts)
        lines.append(
            f"{plan.name}: schema {plan.name} "
            + (f"{len(applied)} migration(s) applied" if applied else "up to date")
            + f", {len(plan.topics.provisions)} topics "
            + (f"({len(created)} created)" if created else "present")
        )
    return lines


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="onedoor-migrate",
        description="Apply every service's schema migrations and create every topic of the "
        "topology, each as the service's own database role and Kafka principal. Idempotent.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="only these services/departments")
    p.add_argument(
        "--role-passwords",
        type=Path,
        default=os.environ.get("ONEDOOR_DB_SECRETS_DIR"),
        help="folder of onedoor_<service>.password files (default ONEDOOR_DB_SECRETS_DIR)",
    )
    p.add_argument(
        "--attempts",
        type=int,
        default=12,
        help="tries per step while Kafka or PostgreSQL is away (back-off to 10 s; default 12)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = get_settings()
    configure_logging("migrate", level=settings.log_level, json=settings.log_json)
    if args.role_passwords is None:
        print(
            "onedoor-migrate: name the folder of the services' database passwords: "
            "--role-passwords DIR or ONEDOOR_DB_SECRETS_DIR (files onedoor_<service>.password, "
            "as python -m deploy.dbroles provision writes them)",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        departments = default_catalogue(settings.catalogue_dirs).departments()
        found, skipped = plans(departments, args.names)
        lines = asyncio.run(migrate_all(settings, found, args.role_passwords, args.attempts))
    except (MigrateError, ConfigError, SecretFileError, KafkaPrincipalError) as exc:
        print(f"onedoor-migrate: {exc}", file=sys.stderr)
        sys.exit(2)
    except (MigrationError, TopicProvisioningError, LimitsError) as exc:
        print(f"onedoor-migrate: failed: {exc}", file=sys.stderr)
        sys.exit(1)
    except (OSError, KafkaError, asyncpg.PostgresError) as exc:
        print(
            f"onedoor-migrate: failed: {type(exc).__name__}: {exc} (Kafka or PostgreSQL "
            "unreachable or refusing; the Job retries)",
            file=sys.stderr,
        )
        sys.exit(1)
    for line in lines:
        print(line)
    for name in skipped:
        print(f"{name}: skipped (its package is not installed here; it migrates at its start)")
    print(f"onedoor-migrate: done, {len(found)} services")


if __name__ == "__main__":
    main()
