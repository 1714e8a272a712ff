"""Intake's text and body rules (services/intake/inputs.py), without a server."""

from __future__ import annotations

import pytest

from services.intake import inputs

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\xc3\x28", "not UTF-8"),
        (b"[" * 33 + b"]" * 33, "nests deeper"),
        (b"1" + b"0" * 30, "digits"),
        (b"-" + b"9" * 31, "digits"),
    ],
)
def test_undecodable_bodies_say_why(body: bytes, why: str) -> None:
    with pytest.raises(inputs.BodyError, match=why):
        inputs.decode(body)


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    text = '{"note": "' + "[" * 100 + '", "q": "\\"{{{"}'
    assert inputs.decode(text.encode()) == {"note": "[" * 100, "q": '"{{{'}


def test_the_deepest_and_longest_allowed_values_decode() -> None:
    assert inputs.decode(b"[" * 32 + b"]" * 32) is not None
    assert inputs.decode(b"9" * 30) == int("9" * 30)


@pytest.mark.parametrize("bad", ["a\x00", "a\nb", "\x1b[31m", "a\u202eb", "a\u2066b", "\x85"])
def test_names_refuse_control_and_bidirectional_characters(bad: str) -> None:
    assert inputs.name_error(bad) is not None


@pytest.mark.parametrize("fine", ["张三", "O'Brien-Smith", "Zoë Ørsted", "有限公司（北京）"])
def test_names_of_every_script_pass(fine: str) -> None:
    assert inputs.name_error(fine) is None


def test_form_rules() -> None:
    errors = inputs.text_errors(
        {("body", "applicant", "name"): "ok"},
        {
            "note": "line one\nline two\ttab",
            "nul": "a\x00b",
            "": 1,
            "deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}},
            "list": [["x\x07"]],
        },
    )
    assert {(loc, kind) for loc, _, kind in errors} == {
        (("body", "form", "nul"), "value_error.form"),
        (("body", "form"), "value_error.form_key"),
        (("body", "form", "deep"), "value_error.form"),
        (("body", "form", "list"), "value_error.form"),
    }
