"""HR registration (job registration, employment items) as a onedoor department."""

from __future__ import annotations

from services.hr_registration import domain
from shared.department.adapter import Department, register_subject_rules

department = Department("hr_registration")
register_subject_rules(
    department, domain.ACTIONS, domain.decide, domain.PersonRecord, domain.CompanyRecord
)
