"""Property tests (Hypothesis): the event decoder, the ID, credit-code and phone checks,
and log masking, over generated input rather than a few examples. Seeded through
Hypothesis' database-free profile so a CI run is repeatable."""

from __future__ import annotations

import json
import string
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.contracts.decoding import decode_record
from shared.contracts.events import EventDecodeError, parse_event
from shared.contracts.identity import (
    _PROVINCE_CODES,
    make_resident_id,
    make_uscc,
    validate_mobile,
    validate_resident_id,
    validate_uscc,
)
from shared.platform.logs import mask_text

pytestmark = pytest.mark.unit

repeatable = settings(
    max_examples=300, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)

regions = st.builds(
    lambda province, rest: province + rest,
    st.sampled_from(sorted(_PROVINCE_CODES)),
    st.text("0123456789", min_size=4, max_size=4),
)
births = st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 1, 1))
USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


@repeatable
@given(regions, births, st.integers(0, 999))
def test_every_made_resident_id_is_valid(region: str, birth: date, seq: int) -> None:
    assert (
        validate_resident_id(make_resident_id(region, birth, seq), today=date(2026, 12, 5)) is None
    )


@repeatable
@given(regions, births, st.integers(0, 999), st.integers(0, 16), st.integers(1, 9))
def test_changing_one_digit_of_a_resident_id_is_caught(
    region: str, birth: date, seq: int, position: int, delta: int
) -> None:
    good = make_resident_id(region, birth, seq)
    digit = str((int(good[position]) + delta) % 10)
    assert validate_resident_id(good[:position] + digit + good[position + 1 :]) is not None


credit_bodies = st.builds(
    lambda authority, category, division, org: authority + category + division + org,
    st.sampled_from("123456789ANY"),
    st.sampled_from("123456789"),
    st.text("0123456789", min_size=6, max_size=6),
    st.text(USCC_CHARSET, min_size=9, max_size=9),
)


@repeatable
@given(credit_bodies, st.integers(0, 16), st.integers(1, 30))
def test_made_credit_codes_pass_and_one_changed_character_is_caught(
    body: str, position: int, delta: int
) -> None:
    good = make_uscc(body)
    assert validate_uscc(good) is None
    changed = USCC_CHARSET[(USCC_CHARSET.index(good[position]) + delta) % 31]
    assert validate_uscc(good[:position] + changed + good[position + 1 :]) is not None


@repeatable
@given(st.text(min_size=0, max_size=30))
def test_the_checks_never_raise_and_accept_only_ascii(value: str) -> None:
    for check in (validate_resident_id, validate_uscc, validate_mobile):
        if check(value) is None:
            assert value.isascii()


@repeatable
@given(st.sampled_from("3456789"), st.text("0123456789", min_size=9, max_size=9))
def test_every_mainland_mobile_number_passes(second: str, rest: str) -> None:
    assert validate_mobile("1" + second + rest) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
records = st.binary(max_size=400) | st.builds(lambda v: json.dumps(v).encode(), json_values)


def _parsed(value: bytes) -> object:
    try:
        return parse_event(value)
    except EventDecodeError as exc:
        return ("refused", str(exc))


@repeatable
@given(records)
def test_the_decoder_never_raises_and_agrees_with_parse_event(value: bytes) -> None:
    verdict = decode_record(value)
    if isinstance(verdict, EventDecodeError):
        assert _parsed(value) == ("refused", str(verdict))
    else:
        assert _parsed(value) == verdict


texts = st.text(string.ascii_letters + " :=+,-", max_size=8)


@repeatable
@given(texts, regions, births, st.integers(0, 999), texts)
def test_a_resident_id_is_masked_wherever_it_stands(
    before: str, region: str, birth: date, seq: int, after: str
) -> None:
    number = make_resident_id(region, birth, seq)
    masked = mask_text(before + number + after)
    assert number not in masked
    assert number[6:14] not in masked  # the birth date never shows


@repeatable
@given(
    texts,
    st.sampled_from(["", "86", "+86", "+86 ", "86-"]),
    st.sampled_from("3456789"),
    st.text("0123456789", min_size=9, max_size=9),
    texts,
)
def test_a_phone_is_masked_wherever_it_stands(
    before: str, country: str, second: str, rest: str, after: str
) -> None:
    phone = "1" + second + rest
    masked = mask_text(before + country + phone + after)
    assert phone not in masked
    assert masked == before + country + phone[:3] + "****" + phone[7:] + after
