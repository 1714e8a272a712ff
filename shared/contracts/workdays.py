"""Working days on the centre's calendar: when a promise of so many working days falls due.

The centre promises each item in ``promised_days`` working days (the catalogue). A working
day is Monday to Friday, unless the State Council's schedule gives it as a public holiday,
or a weekend day that schedule says is worked instead. Each year's schedule is a file,
``shared/contracts/calendars/<year>.yaml`` (or ``ONEDOOR_CALENDAR_DIR``); a year without a
file cannot be counted in, and :class:`MissingCalendarYearError` says which file to add.

How a promise is counted (the usual rule of the centres, "N working days from the day
after acceptance"): the day a case is accepted does not count; the N-th working day after
it is the due day, and the promise holds until the end of that day (midnight, centre
time). One working day is left from the start of the due day: that is when a warning is
due. The router records both instants on its events, so a replay never recounts them.

:class:`ScaledWorkdays` is for tests only: it counts a working day as so many seconds
(``ONEDOOR_TEST_WORKING_DAY_SECONDS``), so deadlines fall due within a test's time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import yaml

from shared.contracts.calendar import CENTRE_TZ

CALENDARS = Path(__file__).parent / "calendars"
SATURDAY = 5


class CalendarError(ValueError):
    """A calendar file is missing, unreadable or inconsistent; the message names it."""


class MissingCalendarYearError(CalendarError):
    """A promise would run into a year that has no calendar file."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """A promise of ``working_days`` working days, counted from an instant.

    ``due_by``: the end of the last working day; ``warn_at``: when one working day is
    left (the start of that day). Both equal the start for a promise of 0 days."""

    working_days: int
    due_by: datetime
    warn_at: datetime


class Workdays(Protocol):
    """What the router counts promises with (:class:`WorkingCalendar` in service)."""

    def deadline(self, start: datetime, working_days: int) -> Deadline: ...

    def check_covers(self, start: datetime, working_days: int) -> None: ...


@dataclass(frozen=True, slots=True)
class CalendarYear:
    """One year's schedule: its days off and its weekend days worked."""

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]
    provisional: bool
    path: Path


def _day(raw: object, where: str) -> date:
    if isinstance(raw, date) and not isinstance(raw, datetime):
        return raw
    raise CalendarError(f"{where}: expected a date like 2026-10-01, got {raw!r}")


def read_year(path: Path) -> CalendarYear:
    """Read one ``<year>.yaml`` file, refusing one that contradicts itself."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CalendarError(f"{path}: cannot read the calendar: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("year"), int):
        raise CalendarError(f"{path}: expected a mapping with year, holidays, workdays")
    year = data["year"]
    if path.stem != str(year):
        raise CalendarError(f"{path}: says year {year}; the file must be named {year}.yaml")
    holidays: set[date] = set()
    for n, entry in enumerate(data.get("holidays") or []):
        where = f"{path}: holidays[{n}]"
        if not isinstance(entry, dict):
            raise CalendarError(f"{where}: expected {{from, to, name}}")
        first, last = _day(entry.get("from"), where), _day(entry.get("to"), where)
        if last < first:
            raise CalendarError(f"{where}: ends before it starts")
        holidays |= {first + timedelta(days=i) for i in range((last - first).days + 1)}
    workdays: set[date] = set()
    for n, entry in enumerate(data.get("workdays") or []):
        where = f"{path}: workdays[{n}]"
        day = _day(entry.get("date") if isinstance(entry, dict) else None, where)
        if day.weekday() < SATURDAY:
            raise CalendarError(f"{where}: {day} is a weekday; list only weekend days worked")
        workdays.add(day)
    for day in holidays | workdays:
        if day.year != year:
            raise CalendarError(f"{path}: {day} is not in {year}")
    if holidays & workdays:
        raise CalendarError(f"{path}: {sorted(holidays & workdays)[0]} is both off and worked")
    return CalendarYear(
        year, frozenset(holidays), frozenset(workdays), bool(data.get("provisional")), path
    )


class WorkingCalendar:
    """The working days of the years it was given (see the module's docstring)."""

    def __init__(self, years: dict[int, CalendarYear], folder: Path) -> None:
        self.years = dict(years)
        self.folder = folder

    @classmethod
    def load(cls, folder: Path | None = None) -> WorkingCalendar:
        """Every ``<year>.yaml`` of ``folder`` (default: the shipped calendars)."""
        folder = folder or CALENDARS
        if not folder.is_dir():
            raise CalendarError(f"calendar folder {folder} does not exist")
        years = {}
        for path in sorted(folder.glob("*.yaml")):
            year = read_year(path)
            years[year.year] = year
        return cls(years, folder)

    def provisional_years(self) -> list[int]:
        return sorted(y for y, c in self.years.items() if c.provisional)

    def _year(self, day: date) -> CalendarYear:
        year = self.years.get(day.year)
        if year is None:
            known = ", ".join(str(y) for y in sorted(self.years)) or "none"
            raise MissingCalendarYearError(
                f"no working-day calendar for {day.year} (needed for {day}); add "
                f"{self.folder / f'{day.year}.yaml'} with that year's public holidays and "
                f"weekend days worked, as the State Council published them (years known: "
                f"{known})"
            )
        return year

    def is_working_day(self, day: date) -> bool:
        year = self._year(day)
        if day in year.workdays:
            return True
        return day.weekday() < SATURDAY and day not in year.holidays

    def due_day(self, accepted_on: date, working_days: int) -> date:
        """The ``working_days``-th working day after ``accepted_on`` (which never counts)."""
        day, left = accepted_on, working_days
        while left > 0:
            day += timedelta(days=1)
            if self.is_working_day(day):
                left -= 1
        return day

    def working_days_between(self, first: date, last: date) -> int:
        """Working days after ``first`` up to and including ``last`` (0 if none)."""
        count, day = 0, first
        while day < last:
            day += timedelta(days=1)
            count += self.is_working_day(day)
        return count

    def deadline(self, start: datetime, working_days: int) -> Deadline:
        """The promise of ``working_days`` from the instant ``start`` (aware)."""
        if working_days <= 0:
            return Deadline(0, start, start)
        due_day = self.due_day(start.astimezone(CENTRE_TZ).date(), working_days)
        day_starts = datetime.combine(due_day, time(), CENTRE_TZ).astimezone(UTC)
        return Deadline(working_days, day_starts + timedelta(days=1), day_starts)

    def check_covers(self, start: datetime, working_days: int) -> None:
        """Raise :class:`MissingCalendarYearError` unless a promise of ``working_days``
        made at ``start`` can be counted (start-up calls it with the longest promise)."""
        self.deadline(start, working_days)


@dataclass(frozen=True, slots=True)
class ScaledWorkdays:
    """Tests only: a working day is ``seconds`` long and every day is one."""

    seconds: float

    def deadline(self, start: datetime, working_days: int) -> Deadline:
        if working_days <= 0:
            return Deadline(0, start, start)
        due = start + timedelta(seconds=self.seconds * working_days)
        return Deadline(working_days, due, due - timedelta(seconds=self.seconds))

    def check_covers(self, start: datetime, working_days: int) -> None:
        """Every span is covered."""


@lru_cache(maxsize=4)
def _shipped(folder: Path | None) -> WorkingCalendar:
    return WorkingCalendar.load(folder)


def workdays_for(folder: Path | None, test_day_seconds: float | None) -> Workdays:
    """The calendar a service counts with: the scaled test clock when
    ``test_day_seconds`` is set, else the calendar files of ``folder`` (default: shipped)."""
    if test_day_seconds:
        return ScaledWorkdays(test_day_seconds)
    return _shipped(folder)
