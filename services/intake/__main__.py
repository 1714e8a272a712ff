"""``python -m services.intake``: serve the HTTP API with uvicorn."""

import uvicorn

from services.intake.api import create_app
from shared.platform.settings import get_settings

settings = get_settings()
uvicorn.run(
    create_app(settings),
    host=settings.http_host,
    port=settings.http_port,
    log_config=None,  # our structlog set-up (PII masking) handles uvicorn's lines too
    timeout_graceful_shutdown=20,
)
