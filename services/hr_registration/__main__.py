"""``python -m services.hr_registration``: run the department adapter."""

from services.hr_registration.main import build
from shared.platform.runtime import run_service

run_service(build)
