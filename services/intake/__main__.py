"""``python -m services.intake``: run intake (its HTTP API under uvicorn)."""

from services.intake.main import build
from shared.platform.runtime import run_service

run_service(build)
