"""What a request's text may hold, beyond its shape: checked before anything is stored.

- The body must decode: UTF-8, JSON nested no deeper than :data:`MAX_JSON_DEPTH`, and
  integers of at most :data:`MAX_INT_DIGITS` digits. Anything else is a 400 naming why
  (Python's own decoder would raise RecursionError or ValueError: a 500).
- Identifiers and names (``item_code``, the applicant's name, ID number and phone, form
  keys) hold no control characters (NUL, newlines) and no bidirectional overrides,
  which could make a name print as another on a receipt or in a log line.
- Form values may hold tabs and line breaks (free text), never NUL, other control
  characters or bidirectional overrides; form keys are 1 to :data:`MAX_FORM_KEY`
  characters; the form nests no deeper than :data:`MAX_FORM_DEPTH`.

Each problem is reported with its field, as the other 422s are.
"""

from __future__ import annotations

import json
import re
from typing import Any

FieldError = tuple[tuple[str | int, ...], str, str]  # (location, message, type)

MAX_JSON_DEPTH = 32
MAX_INT_DIGITS = 30
MAX_FORM_DEPTH = 8
MAX_FORM_KEY = 64

# C0 and C1 controls, DEL; and the bidirectional embeddings, overrides and isolates.
_BIDI = "\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c"
_IN_NAMES = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_IN_TEXT = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI}]")


class BodyError(ValueError):
    """A body that does not decode; the message says why (the answer is 400)."""


def _big_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BodyError(f"a number has more than {MAX_INT_DIGITS} digits")
    return int(text)


def decode(body: bytes) -> Any:
    """The JSON value of ``body``; raises BodyError when it is not UTF-8 JSON within the
    depth and number limits."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"the body is not UTF-8 (byte {exc.start})") from exc
    depth = _depth_of_text(text)
    if depth > MAX_JSON_DEPTH:
        raise BodyError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
    return json.loads(text, parse_int=_big_int)


def _depth_of_text(text: str) -> int:
    """The deepest nesting of brackets outside strings (a cheap pre-check: json.loads
    recurses once per level)."""
    if "[" not in text and "{" not in text:
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def name_error(value: str) -> str | None:
    """Why ``value`` may not be an identifier or a name, or None."""
    found = _IN_NAMES.search(value)
    if found is None:
        return None
    return f"must not contain control or bidirectional characters (U+{ord(found.group()):04X})"


def text_errors(fields: dict[tuple[str | int, ...], str], form: dict[str, Any]) -> list[FieldError]:
    """Every identifier in ``fields`` (location -> value) and every key and text of
    ``form`` checked against the rules above."""
    errors: list[FieldError] = []
    for loc, value in fields.items():
        if (message := name_error(value)) is not None:
            errors.append((loc, message, "value_error.characters"))
    for key, value in form.items():
        if not 1 <= len(key) <= MAX_FORM_KEY or name_error(key) is not None:
            message = f"a form key must be 1 to {MAX_FORM_KEY} characters, no control characters"
            errors.append((("body", "form"), message, "value_error.form_key"))
            continue
        if (problem := _value_problem(value, 1)) is not None:
            errors.append((("body", "form", key), problem, "value_error.form"))
    return errors


def _value_problem(value: Any, depth: int) -> str | None:
    if isinstance(value, str):
        found = _IN_TEXT.search(value)
        if found is not None:
            return f"must not contain control characters (U+{ord(found.group()):04X})"
        return None
    if isinstance(value, dict | list):
        if depth >= MAX_FORM_DEPTH:
            return f"nests deeper than {MAX_FORM_DEPTH} levels"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str) and (len(key) > MAX_FORM_KEY or name_error(key)):
                return f"a key inside is longer than {MAX_FORM_KEY} or has control characters"
            if (problem := _value_problem(item, depth + 1)) is not None:
                return problem
    return None
