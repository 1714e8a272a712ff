"""``python -m services.audit``: ingest the log and serve the read-only API."""

from services.audit.main import build, niceness
from shared.platform.runtime import run_service

run_service(build, nice=niceness)
