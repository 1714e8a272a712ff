"""``python -m services.audit``: ingest the log and serve the read-only API."""

import uvicorn

from services.audit.api import create_app
from shared.platform.runtime import lower_cpu_priority
from shared.platform.settings import get_settings

settings = get_settings()
lower_cpu_priority(settings.audit_nice)
uvicorn.run(
    create_app(settings),
    host=settings.http_host,
    port=settings.http_port,
    log_config=None,
    timeout_graceful_shutdown=20,
)
