"""``python -m services.router``: run the router."""

from services.router.main import build
from shared.platform.runtime import run_service

run_service(build)
