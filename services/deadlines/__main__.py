"""``python -m services.deadlines``: run the deadline service."""

from services.deadlines.main import build
from shared.platform.runtime import run_service

run_service(build)
