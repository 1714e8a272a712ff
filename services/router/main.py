"""Router process: ``python -m services.router``."""

from __future__ import annotations

from pathlib import Path

from services.catalogue import default_catalogue
from services.router.handlers import RouterHandler
from shared.contracts.catalogue import Catalogue
from shared.contracts.topology import CASES_ACCEPTED, all_topics, dept_outcomes
from shared.messaging.consumer import BatchProcessor, ConsumerLoop
from shared.platform import aio
from shared.platform.runtime import ServiceContext, open_service, serve
from shared.platform.settings import Settings, get_settings

NAME = "router"
MIGRATIONS = Path(__file__).parent / "migrations"


async def create_service(settings: Settings, catalogue: Catalogue | None = None) -> ServiceContext:
    """Wire the router: catalogue, schema, topics, relay and its one consumer loop."""
    catalogue = catalogue or default_catalogue(settings.catalogue_dirs)
    departments = sorted(catalogue.departments())
    ctx = await open_service(
        NAME, settings, schema=NAME, migrations=[MIGRATIONS], topics=all_topics(departments)
    )
    ctx.log.info("catalogue loaded", version=catalogue.version, items=len(catalogue.items))
    processor = BatchProcessor(
        settings, ctx.pool, ctx.writer, RouterHandler(catalogue), consumer_name=NAME
    )
    topics = [CASES_ACCEPTED, *(dept_outcomes(d) for d in departments)]
    ctx.loops.append(
        ConsumerLoop(settings, topics, group_id=NAME, processor=processor, relay=ctx.relay)
    )
    return ctx


async def main(settings: Settings | None = None) -> None:
    await serve(lambda: create_service(settings or get_settings()))


if __name__ == "__main__":
    aio.run(main())
