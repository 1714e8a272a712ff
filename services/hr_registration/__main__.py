"""``python -m services.hr_registration``: run the department adapter."""

from services.hr_registration.department import department
from shared.department.adapter import run

run(department)
