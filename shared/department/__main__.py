"""``python -m shared.department PACKAGE``: run the department declared in PACKAGE."""

from shared.department.adapter import main

main()
