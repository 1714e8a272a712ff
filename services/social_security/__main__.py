"""``python -m services.social_security``: run the department adapter."""

from services.social_security.main import build
from shared.platform.runtime import run_service

run_service(build)
