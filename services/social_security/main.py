"""The social security adapter's wiring: ``build(settings)`` for
``python -m services.social_security``."""

from __future__ import annotations

from services.social_security.department import department
from shared.department.adapter import create_service
from shared.platform.runtime import ServiceContext
from shared.platform.settings import Settings


async def build(settings: Settings) -> ServiceContext:
    """The social security adapter, wired by the department SDK."""
    return await create_service(department, settings)
