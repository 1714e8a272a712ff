"""The centres' clock: the time zone their calendar days are counted in.

China keeps one time zone without daylight saving, so a fixed offset is exact and needs
no time-zone database. Receipt numbers, the day a department decides a task on, and the
statistics' days are all the centre's calendar days.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

CENTRE_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")


def centre_day(at: datetime) -> date:
    """The centre's calendar day at the instant ``at`` (an aware datetime)."""
    return at.astimezone(CENTRE_TZ).date()
