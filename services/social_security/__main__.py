"""``python -m services.social_security``: run the department adapter."""

from services.social_security.department import department
from shared.department.adapter import run

run(department)
