"""Identity numbers: check characters, structure, mobile numbers, masking."""

from __future__ import annotations

from datetime import date

import pytest

from shared.contracts.identity import (
    make_resident_id,
    make_uscc,
    mask_phone,
    mask_resident_id,
    resident_id_birth_date,
    validate_mobile,
    validate_resident_id,
    validate_uscc,
)

pytestmark = pytest.mark.unit

# Widely published samples, independent of our own make_* functions.
KNOWN_RESIDENT_ID = "11010519491231002X"
KNOWN_USCC = "91350100M000100Y43"
TODAY = date(2026, 11, 1)


def _hand_check_resident(body17: str) -> str:
    """ISO 7064 MOD 11-2 written out again, so the tests do not trust the module."""
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    assert weights == [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    remainder = sum(int(d) * w for d, w in zip(body17, weights, strict=True)) % 11
    return "10X98765432"[remainder]


def _hand_check_uscc(body17: str) -> str:
    charset = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    weights = [3**i % 31 for i in range(17)]
    assert weights == [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
    total = sum(charset.index(c) * w for c, w in zip(body17, weights, strict=True))
    return charset[(31 - total % 31) % 31]


# --- resident ID ------------------------------------------------------------


def test_known_resident_id_is_valid() -> None:
    assert validate_resident_id(KNOWN_RESIDENT_ID, today=TODAY) is None
    assert _hand_check_resident(KNOWN_RESIDENT_ID[:17]) == "X"
    assert resident_id_birth_date(KNOWN_RESIDENT_ID) == date(1949, 12, 31)


def test_second_known_resident_id_is_valid() -> None:
    # A digit check character, worked by hand: the weighted sum of
    # 31011519880808123 is 280, 280 mod 11 = 5, and "10X98765432"[5] = '7'.
    body = "31011519880808123"
    sample = body + _hand_check_resident(body)
    assert sample == "310115198808081237"
    assert validate_resident_id(sample, today=TODAY) is None


@pytest.mark.parametrize(
    ("region", "birth", "seq"),
    [
        ("110105", date(1949, 12, 31), 2),
        ("440305", date(2000, 2, 29), 0),
        ("650102", date(1975, 7, 1), 999),
        ("310115", date(2026, 11, 1), 137),
    ],
)
def test_make_resident_id_round_trips(region: str, birth: date, seq: int) -> None:
    value = make_resident_id(region, birth, seq)
    assert len(value) == 18
    assert value[:6] == region
    assert value[14:17] == f"{seq:03d}"
    assert value[17] == _hand_check_resident(value[:17])
    assert validate_resident_id(value, today=TODAY) is None
    assert resident_id_birth_date(value) == birth


def test_make_resident_id_gives_known_sample() -> None:
    assert make_resident_id("110105", date(1949, 12, 31), 2) == KNOWN_RESIDENT_ID


def test_every_check_character_value_is_reachable() -> None:
    # Sweep sequence numbers until all 11 check characters have appeared, and
    # confirm each one is accepted only in its own position.
    seen: set[str] = set()
    for seq in range(200):
        value = make_resident_id("320102", date(1990, 5, 17), seq)
        seen.add(value[17])
        wrong = "0" if value[17] != "0" else "1"
        assert validate_resident_id(value[:17] + wrong, today=TODAY) is not None
    assert seen == set("0123456789X")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("11010519491231002", "18 characters, got 17"),
        ("11010519491231002XX", "18 characters, got 19"),
        ("", "18 characters, got 0"),
        ("1101051949123100AX", "characters 1-17 must be digits"),
        ("11010519491231002x", "uppercase 'X'"),
        ("11010519491231002Y", "digit or 'X'"),
        ("99010519491231002X", "unknown province"),
        ("110105194902300021", "not a calendar date"),
        ("110105194913010021", "not a calendar date"),
        ("110105189912310021", "out of range"),
        ("110105203001010021", "out of range"),
        ("110105194912310021", "check character does not match"),
        ("11010519491231002\uff18", "digit or 'X'"),
        ("\uff11\uff11010519491231002X", "must be digits"),
    ],
)
def test_invalid_resident_ids_name_the_problem(value: str, fragment: str) -> None:
    problem = validate_resident_id(value, today=TODAY)
    assert problem is not None
    assert fragment in problem
    # Never a part of the number: no region, no birth date, no right check character.
    for part in (value[:6], value[6:14], "expected"):
        assert not part or len(part) < 4 or part not in problem


def test_resident_id_transposed_digits_fail_check() -> None:
    swapped = KNOWN_RESIDENT_ID[:14] + "020" + KNOWN_RESIDENT_ID[17]
    problem = validate_resident_id(swapped, today=TODAY)
    assert problem is not None
    assert "check character" in problem


def test_birth_in_future_uses_today() -> None:
    value = make_resident_id("110105", date(2026, 11, 2), 1)
    assert validate_resident_id(value, today=date(2026, 11, 2)) is None
    problem = validate_resident_id(value, today=date(2026, 11, 1))
    assert problem is not None
    assert "out of range" in problem


def test_resident_id_birth_date_does_not_depend_on_the_day_it_is_asked() -> None:
    # A rule replayed decides alike: the birth date is read, not judged against the
    # wall clock (a date after today used to be refused, so the answer changed with it).
    value = make_resident_id("110105", date(9000, 1, 2), 1)
    assert resident_id_birth_date(value) == date(9000, 1, 2)


def test_resident_id_birth_date_rejects_invalid() -> None:
    with pytest.raises(ValueError, match="check character"):
        resident_id_birth_date("110105194912310021")


@pytest.mark.parametrize(
    ("region", "birth", "seq", "fragment"),
    [
        ("11010", date(1990, 1, 1), 1, "6 digits"),
        ("11010A", date(1990, 1, 1), 1, "6 digits"),
        ("990105", date(1990, 1, 1), 1, "unknown province"),
        ("110105", date(1990, 1, 1), 1000, "0..999"),
        ("110105", date(1990, 1, 1), -1, "0..999"),
        ("110105", date(1899, 12, 31), 1, "before 1900"),
    ],
)
def test_make_resident_id_rejects_bad_parts(
    region: str, birth: date, seq: int, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        make_resident_id(region, birth, seq)


# --- unified social credit code -----------------------------------------------


def test_known_uscc_is_valid() -> None:
    assert validate_uscc(KNOWN_USCC) is None
    assert _hand_check_uscc(KNOWN_USCC[:17]) == "3"
    assert make_uscc(KNOWN_USCC[:17]) == KNOWN_USCC


@pytest.mark.parametrize(
    "body17",
    [
        "91110108MA01ABCDE",  # company, Beijing Haidian
        "12100000400000624",  # public institution, central level
        "52310115MJ4963258",  # civil-affairs social organisation
        "Y1440300MA5DFGHJK",  # "other" registration authority
        "93320102MA1PQRTU0",  # farmers' cooperative
    ],
)
def test_make_uscc_round_trips(body17: str) -> None:
    code = make_uscc(body17)
    assert code[:17] == body17
    assert code[17] == _hand_check_uscc(body17)
    assert validate_uscc(code) is None


def test_uscc_check_value_31_maps_to_zero() -> None:
    # Find a body whose weighted sum is a multiple of 31: then 31 - 0 = 31 -> '0'.
    charset = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    for last in charset:
        body = "9111010800000000" + last
        if make_uscc(body)[17] == "0":
            total = sum(charset.index(c) * (3**i % 31) for i, c in enumerate(body))
            assert total % 31 == 0
            assert validate_uscc(body + "0") is None
            return
    pytest.fail("no body with a zero check character found")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("91350100M000100Y4", "18 characters, got 17"),
        ("91350100M000100Y433", "18 characters, got 19"),
        ("91350100m000100Y43", "must be uppercase"),
        ("91350100O000100Y43", "not allowed"),
        ("91350100I000100Y43", "not allowed"),
        ("91350100S000100Y43", "not allowed"),
        ("91350100V000100Y43", "not allowed"),
        ("91350100Z000100Y43", "not allowed"),
        ("91350100-000100Y43", "not allowed"),
        ("B1350100M000100Y43", "registration authority 'B'"),
        ("01350100M000100Y43", "registration authority '0'"),
        ("9A350100M000100Y43", "institution category 'A'"),
        ("90350100M000100Y43", "institution category '0'"),
        ("9135A100M000100Y43", "division code"),
        ("91350100M000100Y44", "check character is '4', expected '3'"),
        ("91350100M000100Y34", "check character"),
    ],
)
def test_invalid_uscc_names_the_problem(value: str, fragment: str) -> None:
    problem = validate_uscc(value)
    assert problem is not None
    assert fragment in problem


def test_uscc_single_character_changes_are_caught() -> None:
    # MOD 31 with these weights catches every single substitution in the body.
    charset = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    for position in range(8, 17):
        for replacement in charset:
            if replacement == KNOWN_USCC[position]:
                continue
            altered = KNOWN_USCC[:position] + replacement + KNOWN_USCC[position + 1 :]
            assert validate_uscc(altered) is not None, altered


@pytest.mark.parametrize(
    ("body17", "fragment"),
    [
        ("91350100M000100Y", "17 characters, got 16"),
        ("91350100M000100YO", "not allowed"),
        ("91350100m000100Y4", "uppercase"),
    ],
)
def test_make_uscc_rejects_bad_body(body17: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        make_uscc(body17)


# --- mobile -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["13812345678", "19912345678", "15000000000", "17600001111"])
def test_valid_mobiles(value: str) -> None:
    assert validate_mobile(value) is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("1381234567", "11 digits"),
        ("138123456789", "11 digits"),
        ("+8613812345678", "11 digits"),
        ("138-1234-56", "digits only"),
        ("1381234567a", "digits only"),
        ("12812345678", "1 followed by a digit 3-9"),
        ("10812345678", "1 followed by a digit 3-9"),
        ("23812345678", "1 followed by a digit 3-9"),
        ("\uff11\uff13812345678", "digits only"),
    ],
)
def test_invalid_mobiles(value: str, fragment: str) -> None:
    problem = validate_mobile(value)
    assert problem is not None
    assert fragment in problem


# --- masking ------------------------------------------------------------------------


def test_mask_resident_id_keeps_first_three_and_last_four() -> None:
    assert mask_resident_id(KNOWN_RESIDENT_ID) == "110***********002X"
    assert mask_resident_id("110105194912310021") == "110***********0021"


def test_mask_phone_keeps_first_three_and_last_four() -> None:
    assert mask_phone("13812345678") == "138****5678"


def test_masking_hides_birth_date_and_keeps_length() -> None:
    masked = mask_resident_id(KNOWN_RESIDENT_ID)
    assert len(masked) == len(KNOWN_RESIDENT_ID)
    assert "19491231" not in masked


@pytest.mark.parametrize("value", ["", "1", "1234567"])
def test_masking_short_values_hides_everything(value: str) -> None:
    assert mask_resident_id(value) == "*" * len(value)
    assert mask_phone(value) == "*" * len(value)


def test_masking_malformed_value_still_masks() -> None:
    assert mask_phone("12345678") == "123*5678"
