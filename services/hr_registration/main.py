"""The HR registration adapter's wiring: ``build(settings)`` for
``python -m services.hr_registration``."""

from __future__ import annotations

from services.hr_registration.department import department
from shared.department.adapter import create_service
from shared.platform.runtime import ServiceContext
from shared.platform.settings import Settings


async def build(settings: Settings) -> ServiceContext:
    """The HR registration adapter, wired by the department SDK."""
    return await create_service(department, settings)
