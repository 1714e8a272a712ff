"""The deadline service's wiring: ``build(settings)`` for ``python -m services.deadlines``."""

from __future__ import annotations

from pathlib import Path

from services.catalogue import default_catalogue
from services.deadlines.clock import DeadlineClock
from services.deadlines.handlers import DeadlinesHandler
from shared.contracts.catalogue import Catalogue
from shared.contracts.topology import DEADLINES
from shared.messaging.consumer import BatchProcessor, ConsumerLoop
from shared.platform.runtime import Plumbing, ServiceContext, Topics, open_service
from shared.platform.settings import Settings

NAME = DEADLINES
MIGRATIONS = Path(__file__).parent / "migrations"


def topics(departments: list[str] | frozenset[str]) -> Topics:
    """Reads cases.routing and every department's tasks and outcomes; writes
    cases.deadlines."""
    return Topics.of(NAME, departments)


def wire(plumbing: Plumbing) -> ServiceContext:
    """One consumer loop that sets and stops timers, one clock that fires them."""
    processor = BatchProcessor(
        plumbing.settings,
        plumbing.pool,
        plumbing.writer,
        DeadlinesHandler(),
        consumer_name=NAME,
        keys=plumbing.keys,
    )
    loop = ConsumerLoop(
        plumbing.settings,
        plumbing.topics.consumes,
        group_id=NAME,
        processor=processor,
        relay=plumbing.relay,
    )
    clock = DeadlineClock(plumbing.settings, plumbing.pool, plumbing.writer, plumbing.relay)
    return plumbing.service(loops=[loop], runners=[clock])


async def build(settings: Settings, catalogue: Catalogue | None = None) -> ServiceContext:
    """The deadline service: its schema, topics, relay, consumer loop and clock. The
    catalogue only names the departments whose topics it reads."""
    catalogue = catalogue or default_catalogue(settings.catalogue_dirs)
    plumbing = await open_service(
        NAME,
        settings,
        schema=NAME,
        migrations=[MIGRATIONS],
        topics=topics(catalogue.departments()),
    )
    return wire(plumbing)
