"""The working-day calendar (shared/contracts/workdays.py) and the shipped calendar files."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from services.router.main import calendar
from shared.contracts.calendar import CENTRE_TZ
from shared.contracts.catalogue import Catalogue
from shared.contracts.workdays import (
    CalendarError,
    MissingCalendarYearError,
    ScaledWorkdays,
    WorkingCalendar,
    read_year,
)
from shared.platform.settings import ConfigError, Settings

pytestmark = pytest.mark.unit

SHIPPED = WorkingCalendar.load()


def at(day: date, hour: int = 10) -> datetime:
    """An instant on the centre's day ``day``."""
    return datetime(day.year, day.month, day.day, hour, tzinfo=CENTRE_TZ)


def test_the_current_and_next_year_are_shipped_and_only_the_next_is_provisional() -> None:
    assert {2026, 2027} <= set(SHIPPED.years)
    assert SHIPPED.provisional_years() == [2027]


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 1, 1), False),  # New Year's Day, a Thursday
        (date(2026, 1, 4), True),  # Sunday worked for it
        (date(2026, 2, 16), False),  # Spring Festival, a Monday
        (date(2026, 2, 14), True),  # Saturday worked for it
        (date(2026, 10, 8), True),  # Thursday after National Day
        (date(2026, 10, 10), True),  # Saturday worked
        (date(2026, 10, 11), False),  # an ordinary Sunday
        (date(2026, 11, 27), True),  # an ordinary Friday
    ],
)
def test_holidays_and_weekend_days_worked(day: date, working: bool) -> None:
    assert SHIPPED.is_working_day(day) is working


def test_a_promise_counts_working_days_from_the_day_after_acceptance() -> None:
    # Accepted Friday 27 November 2026: three working days are Mon, Tue, Wed.
    promise = SHIPPED.deadline(at(date(2026, 11, 27)), 3)
    assert promise.due_by == datetime(2026, 12, 3, tzinfo=CENTRE_TZ)  # end of Wed 2 Dec
    assert promise.warn_at == datetime(2026, 12, 2, tzinfo=CENTRE_TZ)  # one day left
    assert promise.due_by.tzinfo == UTC


def test_a_promise_over_national_day_skips_the_week_and_counts_the_saturday_worked() -> None:
    # Accepted Wednesday 30 September: Oct 1-7 off, Thu 8, Fri 9, Sat 10 (worked).
    promise = SHIPPED.deadline(at(date(2026, 9, 30)), 3)
    assert promise.due_by == datetime(2026, 10, 11, tzinfo=CENTRE_TZ)
    assert SHIPPED.working_days_between(date(2026, 9, 30), date(2026, 10, 10)) == 3


def test_the_centre_day_decides_not_utc() -> None:
    # 23:30 UTC on Thursday 26 Nov is already Friday 27 Nov in the centre.
    late_thursday_utc = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)
    assert SHIPPED.deadline(late_thursday_utc, 1).due_by == datetime(2026, 12, 1, tzinfo=CENTRE_TZ)


def test_a_promise_of_no_days_is_due_at_once() -> None:
    start = at(date(2026, 11, 27))
    promise = SHIPPED.deadline(start, 0)
    assert (promise.due_by, promise.warn_at) == (start, start)


def test_a_year_without_its_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "2026.yaml").write_text(
        (Path(SHIPPED.folder) / "2026.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    only_2026 = WorkingCalendar.load(tmp_path)
    with pytest.raises(
        MissingCalendarYearError, match=r"no working-day calendar for 2027.*2027\.yaml"
    ):
        only_2026.deadline(at(date(2026, 12, 28)), 10)


def test_the_router_refuses_to_start_when_the_longest_promise_needs_a_missing_year(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    settings = Settings(calendar_dir=tmp_path)  # an empty folder: not even this year
    with pytest.raises(ConfigError, match="working-day calendar: no working-day calendar for"):
        calendar(settings, catalogue)


def test_the_router_counts_with_the_test_clock_when_asked() -> None:
    settings = Settings(test_working_day_seconds=2.0)
    start = datetime(2030, 1, 1, tzinfo=UTC)  # no calendar needed
    promise = ScaledWorkdays(2.0).deadline(start, 5)
    assert (promise.due_by - start, promise.due_by - promise.warn_at) == (
        timedelta(seconds=10),
        timedelta(seconds=2),
    )
    assert settings.test_working_day_seconds == 2.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("year: 2026\nholidays:\n  - {from: 2026-01-02, to: 2026-01-01, name: x}\n", "ends before"),
        ("year: 2026\nworkdays:\n  - {date: 2026-01-05, name: x}\n", "is a weekday"),
        ("year: 2026\nholidays:\n  - {from: 2025-12-31, to: 2025-12-31, name: x}\n", "not in 2026"),
        ("year: 2025\n", "must be named 2025.yaml"),
        ("- 1\n", "expected a mapping"),
    ],
)
def test_a_calendar_file_that_contradicts_itself_is_refused(
    tmp_path: Path, body: str, message: str
) -> None:
    path = tmp_path / "2026.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(CalendarError, match=message):
        read_year(path)
