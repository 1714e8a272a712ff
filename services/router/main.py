"""The router's wiring: ``build(settings)`` for ``python -m services.router``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from services.catalogue import default_catalogue
from services.router.handlers import RouterHandler
from shared.contracts.catalogue import Catalogue
from shared.contracts.topology import ROUTER, all_topics
from shared.messaging.consumer import BatchProcessor, ConsumerLoop
from shared.platform.runtime import Plumbing, ServiceContext, Topics, open_service
from shared.platform.settings import Settings

NAME = ROUTER
MIGRATIONS = Path(__file__).parent / "migrations"


def topics(departments: Iterable[str]) -> Topics:
    """Reads cases.accepted and every department's outcomes; writes cases.routing and
    every department's tasks; creates every topic."""
    departments = sorted(set(departments))
    return Topics.of(NAME, departments, provisions=all_topics(departments))


def wire(plumbing: Plumbing, catalogue: Catalogue) -> ServiceContext:
    """The router on opened plumbing: one consumer loop over what it reads."""
    processor = BatchProcessor(
        plumbing.settings,
        plumbing.pool,
        plumbing.writer,
        RouterHandler(catalogue),
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
    return plumbing.service(loops=[loop])


async def build(settings: Settings, catalogue: Catalogue | None = None) -> ServiceContext:
    """The router: its catalogue, schema, topics, relay and its one consumer loop."""
    catalogue = catalogue or default_catalogue(settings.catalogue_dirs)
    plumbing = await open_service(
        NAME,
        settings,
        schema=NAME,
        migrations=[MIGRATIONS],
        topics=topics(catalogue.departments()),
    )
    plumbing.log.info("catalogue loaded", version=catalogue.version, items=len(catalogue.items))
    return wire(plumbing, catalogue)
