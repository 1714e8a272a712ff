"""The router's wiring: ``build(settings)`` for ``python -m services.router``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from services.catalogue import default_catalogue
from services.router.domain import REVIEW_DAYS
from services.router.handlers import RouterHandler
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import utcnow
from shared.contracts.topology import ROUTER, all_topics
from shared.contracts.workdays import CalendarError, Workdays, WorkingCalendar, workdays_for
from shared.messaging.consumer import BatchProcessor, ConsumerLoop
from shared.platform.runtime import Plumbing, ServiceContext, Topics, open_service
from shared.platform.settings import ConfigError, Settings

NAME = ROUTER
MIGRATIONS = Path(__file__).parent / "migrations"


def topics(departments: Iterable[str]) -> Topics:
    """Reads cases.accepted and every department's outcomes; writes cases.routing and
    every department's tasks; creates every topic."""
    departments = sorted(set(departments))
    return Topics.of(NAME, departments, provisions=all_topics(departments))


def calendar(settings: Settings, catalogue: Catalogue) -> Workdays:
    """The working-day calendar promises are counted on, checked at start-up: it must
    count the longest promise the catalogue (or a review) makes today, else the router
    refuses to start, naming the calendar year to add."""
    try:
        workdays = workdays_for(settings.calendar_dir, settings.test_working_day_seconds)
        longest = max([REVIEW_DAYS, *(i.promised_days for i in catalogue.items.values())])
        workdays.check_covers(utcnow(), longest)
    except CalendarError as exc:
        raise ConfigError(f"working-day calendar: {exc}") from None
    return workdays


def wire(
    plumbing: Plumbing, catalogue: Catalogue, workdays: Workdays | None = None
) -> ServiceContext:
    """The router on opened plumbing: one consumer loop over what it reads."""
    processor = BatchProcessor(
        plumbing.settings,
        plumbing.pool,
        plumbing.writer,
        RouterHandler(catalogue, workdays or calendar(plumbing.settings, catalogue)),
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
    workdays = calendar(settings, catalogue)  # before anything: a missing year stops here
    plumbing = await open_service(
        NAME,
        settings,
        schema=NAME,
        migrations=[MIGRATIONS],
        topics=topics(catalogue.departments()),
    )
    plumbing.log.info("catalogue loaded", version=catalogue.version, items=len(catalogue.items))
    provisional = workdays.provisional_years() if isinstance(workdays, WorkingCalendar) else []
    if provisional:
        plumbing.log.warning(
            "provisional working-day calendar: replace it with the published schedule",
            years=provisional,
        )
    return wire(plumbing, catalogue, workdays)
