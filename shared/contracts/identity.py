"""Chinese identity numbers: resident ID, unified social credit code, mobile number.

Validators return ``None`` for a valid value and otherwise one short message naming
the first problem found, so the intake service can put it straight into a
machine-readable rejection reason without parsing exceptions.

Validation is strict about form: values are not trimmed, and a resident ID whose
check character is a lowercase ``x`` is rejected rather than normalised. The
window client normalises what the clerk types; by the time a number reaches the
platform it must already be canonical, because it is compared byte for byte in
the audit replay.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from shared.contracts.calendar import CENTRE_TZ

__all__ = [
    "make_resident_id",
    "make_uscc",
    "mask_phone",
    "mask_resident_id",
    "resident_id_birth_date",
    "validate_mobile",
    "validate_resident_id",
    "validate_uscc",
]

# China has a single time zone and no daylight saving, so a fixed offset is exact
# and avoids depending on the system tz database.

# --- resident identity number (GB 11643-1999) -------------------------------

_RESIDENT_ID_LENGTH = 18
_RESIDENT_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RESIDENT_CHECK_CHARS = "10X98765432"
# Province-level codes (GB/T 2260), plus 81/82/83 used on residence permits for
# Hong Kong, Macao and Taiwan residents. Checking only the province keeps us
# correct when counties are merged or renumbered, which happens every year.
_PROVINCE_CODES = frozenset(
    {
        "11", "12", "13", "14", "15",
        "21", "22", "23",
        "31", "32", "33", "34", "35", "36", "37",
        "41", "42", "43", "44", "45", "46",
        "50", "51", "52", "53", "54",
        "61", "62", "63", "64", "65",
        "71", "81", "82", "83",
    }
)  # fmt: skip
_EARLIEST_BIRTH = date(1900, 1, 1)
_MAX_SEQUENCE = 999


def _is_ascii_digits(value: str) -> bool:
    # str.isdigit() accepts full-width and other Unicode digits, which int() would
    # then silently accept too; identity numbers are ASCII only.
    return value.isascii() and value.isdigit()


def _resident_check_char(body17: str) -> str:
    total = sum(int(ch) * w for ch, w in zip(body17, _RESIDENT_WEIGHTS, strict=True))
    return _RESIDENT_CHECK_CHARS[total % 11]


def _parse_birth(digits8: str) -> date | None:
    try:
        return date(int(digits8[0:4]), int(digits8[4:6]), int(digits8[6:8]))
    except ValueError:
        return None


def _resident_shape_problem(value: str) -> str | None:
    if len(value) != _RESIDENT_ID_LENGTH:
        return f"resident ID must be 18 characters, got {len(value)}"
    body, check = value[:17], value[17]
    if not _is_ascii_digits(body):
        return "resident ID characters 1-17 must be digits"
    if check == "x":
        return "resident ID check character must be uppercase 'X', not 'x'"
    if not (_is_ascii_digits(check) or check == "X"):
        return "resident ID check character must be a digit or 'X'"
    if body[:2] not in _PROVINCE_CODES:
        return "resident ID region code has an unknown province (characters 1-2)"
    return None


def _resident_birth_problem(value: str, today: date | None) -> str | None:
    birth = _parse_birth(value[6:14])
    if birth is None:
        return "resident ID birth date (characters 7-14) is not a calendar date"
    reference = today if today is not None else datetime.now(CENTRE_TZ).date()
    if birth < _EARLIEST_BIRTH or birth > reference:
        return "resident ID birth date (characters 7-14) is out of range (1900 to today)"
    return None


def _resident_check_problem(value: str) -> str | None:
    # The message never repeats the number or the right check character: it would tell
    # whoever reads the answer (or a log) most of a person's ID.
    if value[17] != _resident_check_char(value[:17]):
        return "resident ID check character does not match characters 1-17 (a mistyped digit?)"
    return None


def validate_resident_id(value: str, *, today: date | None = None) -> str | None:
    """Check an 18-character resident identity number.

    Checks, in order: length, characters (17 ASCII digits then a digit or
    uppercase ``X``), province code, birth date (a real calendar date between
    1900-01-01 and ``today``), and the ISO 7064 MOD 11-2 check character.

    Args:
        value: the number exactly as received; it is not trimmed or upper-cased.
        today: the reference date for "birth date in the future"; defaults to the
            current date in China. Pass it explicitly for reproducible checks.

    Returns:
        ``None`` when valid, otherwise a short message naming the problem.
    """
    # Each check assumes the ones before it passed; `or` stops at the first problem.
    return (
        _resident_shape_problem(value)
        or _resident_birth_problem(value, today)
        or _resident_check_problem(value)
    )


def resident_id_birth_date(value: str) -> date:
    """Return the birth date encoded in a well-formed resident identity number.

    The answer never depends on the day it is asked (a rule replayed years later decides
    alike): a birth date after today is not a reason to refuse here, rules compare the
    date with the day of their own task.

    Raises:
        ValueError: the number is not valid (the message says why).
    """
    problem = validate_resident_id(value, today=date.max)
    if problem is not None:
        raise ValueError(problem)
    # validate_resident_id has just proved characters 7-14 form a real date.
    birth = _parse_birth(value[6:14])
    assert birth is not None
    return birth


def make_resident_id(region: str, birth: date, seq: int) -> str:
    """Build a resident identity number with its check character.

    The 17th character is the last digit of ``seq``; by convention an odd value
    means male and an even value female, so pick ``seq`` accordingly.

    Args:
        region: the 6-digit administrative division code of the place of issue.
        birth: date of birth.
        seq: sequence number for people born on the same day there, 0..999.

    Raises:
        ValueError: a malformed region code, birth year or sequence number.
    """
    if len(region) != 6 or not _is_ascii_digits(region):
        raise ValueError(f"region must be 6 digits, got {region!r}")
    if region[:2] not in _PROVINCE_CODES:
        raise ValueError(f"region {region} has unknown province {region[:2]}")
    if not 0 <= seq <= _MAX_SEQUENCE:
        raise ValueError(f"seq must be 0..999, got {seq}")
    if birth < _EARLIEST_BIRTH:
        raise ValueError(f"birth date {birth.isoformat()} is before 1900")
    body = f"{region}{birth:%Y%m%d}{seq:03d}"
    return body + _resident_check_char(body)


# --- unified social credit code (GB 32100-2015) -----------------------------

_USCC_LENGTH = 18
# 31 characters: digits and uppercase letters without I, O, S, V, Z, which are
# too easily confused with 1, 0, 5, U and 2 when read out or handwritten.
_USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUES = {ch: i for i, ch in enumerate(_USCC_CHARSET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# Registration management department codes in use (character 1): 1-9, A
# (central military reform office), N (agriculture), Y (other).
_USCC_AUTHORITIES = frozenset("123456789ANY")


def _uscc_check_char(body17: str) -> str:
    total = sum(_USCC_VALUES[ch] * w for ch, w in zip(body17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARSET[(31 - total % 31) % 31]


def _uscc_charset_problem(value: str) -> str | None:
    for position, ch in enumerate(value, start=1):
        if ch not in _USCC_VALUES:
            if ch.upper() in _USCC_VALUES:
                return f"USCC character {position} {ch!r} must be uppercase"
            return f"USCC character {position} {ch!r} is not allowed (no I, O, S, V, Z)"
    return None


def _uscc_structure_problem(value: str) -> str | None:
    if value[0] not in _USCC_AUTHORITIES:
        return f"USCC registration authority {value[0]!r} is not in use"
    if value[1] not in "123456789":
        return f"USCC institution category {value[1]!r} must be a digit 1-9"
    if not _is_ascii_digits(value[2:8]):
        return f"USCC division code {value[2:8]} must be 6 digits"
    return None


def validate_uscc(value: str) -> str | None:
    """Check an 18-character unified social credit code.

    Checks, in order: length, character set, the registration authority
    (character 1), the institution category (character 2, a digit 1-9), the
    administrative division (characters 3-8, digits) and the check character
    (character 18). The embedded organisation code (characters 9-17) is not
    checked separately: codes issued before 2015 do not all satisfy it, and the
    final check character already covers those characters.

    Returns:
        ``None`` when valid, otherwise a short message naming the problem.
    """
    if len(value) != _USCC_LENGTH:
        return f"USCC must be 18 characters, got {len(value)}"
    problem = _uscc_charset_problem(value) or _uscc_structure_problem(value)
    if problem is not None:
        return problem
    expected = _uscc_check_char(value[:17])
    if value[17] != expected:
        return f"USCC check character is {value[17]!r}, expected {expected!r}"
    return None


def make_uscc(body17: str) -> str:
    """Append the GB 32100 check character to the first 17 characters of a USCC.

    Only the length and character set are checked here, so tests can build codes
    that are wrong in other respects.

    Raises:
        ValueError: ``body17`` is not 17 characters from the USCC character set.
    """
    if len(body17) != 17:
        raise ValueError(f"USCC body must be 17 characters, got {len(body17)}")
    problem = _uscc_charset_problem(body17)
    if problem is not None:
        raise ValueError(problem)
    return body17 + _uscc_check_char(body17)


# --- mobile phone ------------------------------------------------------------

_MOBILE = re.compile(r"1[3-9][0-9]{9}")


def validate_mobile(value: str) -> str | None:
    """Check a mainland China mobile number: 11 digits, ``1`` then ``3``-``9``.

    No country code, spaces or dashes: the window client strips those.

    Returns:
        ``None`` when valid, otherwise a short message naming the problem.
    """
    if len(value) != 11:
        return f"mobile number must be 11 digits, got {len(value)} characters"
    if not _is_ascii_digits(value):
        return "mobile number must contain digits only"
    if _MOBILE.fullmatch(value) is None:
        return "mobile number must start with 1 followed by a digit 3-9"
    return None


# --- masking for logs and screens --------------------------------------------


def _mask(value: str, keep_head: int, keep_tail: int) -> str:
    # Too short to keep both ends without revealing most of it (or a malformed
    # value): mask everything rather than leak a personal number into a log.
    if len(value) <= keep_head + keep_tail:
        return "*" * len(value)
    hidden = len(value) - keep_head - keep_tail
    return value[:keep_head] + "*" * hidden + value[len(value) - keep_tail :]


def mask_resident_id(value: str) -> str:
    """Mask a resident ID for logs: first 3 and last 4 kept, ``110***********123X``.

    Works on malformed input too; a value of 7 characters or fewer is fully masked.
    """
    return _mask(value, 3, 4)


def mask_phone(value: str) -> str:
    """Mask a phone number for logs: first 3 and last 4 kept, ``138****5678``.

    Works on malformed input too; a value of 7 characters or fewer is fully masked.
    """
    return _mask(value, 3, 4)
