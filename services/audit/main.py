"""The audit's wiring: ``build(settings)`` for ``python -m services.audit``."""

from __future__ import annotations

import os
from collections.abc import Iterable

from starlette.types import ASGIApp

from services.audit import store
from services.audit.api import create_app
from services.audit.checkpoints import CheckpointWriter
from services.audit.ingest import AuditIngest, event_log_pattern
from services.audit.verifications import VerifySchedule
from services.catalogue import default_catalogue
from shared.contracts.topology import AUDIT, all_topics
from shared.messaging.access import AccessRecorder
from shared.messaging.consumer import ConsumerLoop
from shared.platform import oidc
from shared.platform.runtime import (
    Plumbing,
    RunningService,
    ServiceContext,
    Topics,
    open_service,
)
from shared.platform.settings import Settings

NAME = AUDIT


def topics(departments: Iterable[str]) -> Topics:
    """Reads every event-log topic and writes its own access topic (the people who read
    a case's history through it); creates every topic."""
    departments = sorted(set(departments))
    return Topics.of(NAME, departments, provisions=all_topics(departments))


def niceness(settings: Settings) -> int:
    """The audit only observes the log: it takes this niceness before anything else, so
    on a shared host the pipeline's cases go first (``ONEDOOR_AUDIT_NICE``)."""
    return settings.audit_nice


def wire(plumbing: Plumbing, issuer_of_oidc: oidc.OidcVerifier | None = None) -> ServiceContext:
    """The audit on opened plumbing: one consumer loop that stores every event, and its
    read-only app. The loop subscribes by the event-log pattern, not by
    ``topics.consumes``: the pattern matches those and a department's topics created
    after the audit started."""
    settings = plumbing.settings
    checkpoints = CheckpointWriter(
        settings, plumbing.pool, plumbing.writer, committed=plumbing.relay.wake
    )
    ingest = AuditIngest(settings, plumbing.pool, checkpoints=checkpoints)
    loop = ConsumerLoop(
        settings, [], group_id=NAME, processor=ingest, pattern=event_log_pattern(settings)
    )
    recorder = AccessRecorder(
        plumbing.pool, plumbing.writer, service=NAME, committed=plumbing.relay.wake
    )
    schedule = VerifySchedule(settings, plumbing.pool)

    def http(live: RunningService) -> ASGIApp:
        schedule.start()  # verify at start, then every audit_verify_every_s
        return create_app(live, ingest, recorder, issuer_of_oidc)

    # At close: a last checkpoint of what this run stored, then the schedule stops.
    return plumbing.service(loops=[loop], http=http, on_close=[checkpoints.close, schedule.close])


async def build(settings: Settings) -> ServiceContext:
    """The audit: its schema, topics, relay, ingest loop and app."""
    catalogue = default_catalogue(settings.catalogue_dirs)
    issuer_of_oidc = await oidc.load(settings)  # a configuration error stops here
    plumbing = await open_service(
        NAME,
        settings,
        schema=NAME,
        migrations=[store.MIGRATIONS_DIR],
        topics=topics(catalogue.departments()),
    )
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > 0:
        plumbing.log.info("running at lower CPU priority: the pipeline goes first", nice=nice)
    return wire(plumbing, issuer_of_oidc)
