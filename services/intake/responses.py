"""What POST /cases answers, as the OpenAPI document states it.

The lean front (:class:`services.intake.api.CasesFront`) answers POST /cases before
FastAPI sees the request; the route declared on the FastAPI app documents the same
contract, with these models and responses, so ``/openapi.json`` and the committed
``docs/openapi.json`` show every answer the front gives.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Receipt(BaseModel):
    """The case accepted (201), or the case an earlier request with the same
    Idempotency-Key created (200, with ``Idempotent-Replayed: true``)."""

    case_id: str = Field(
        description="The case's id (a UUID); also the key of its events on the log.",
        examples=["0b5e1c1e-6f1d-4c1a-9a55-2f6b1d0c9e01"],
    )
    receipt_no: str = Field(
        description="The receipt number handed to the applicant: per centre and day, no gaps.",
        examples=["C01-20250303-0001"],
    )
    status: str = Field(
        description="Where the case stands: ``accepted`` for a new case; a replay answers "
        "the case's status at the time (``accepted``, ``in_progress``, ``closed``, ...).",
        examples=["accepted"],
    )


class Problem(BaseModel):
    """A refusal with one message."""

    detail: str = Field(description="What went wrong, for the clerk's screen and the logs.")


class FieldProblem(BaseModel):
    """One problem of the request, with the field it concerns."""

    loc: list[str | int] = Field(
        description="Where: ``body`` then the field's path, or ``header`` and its name.",
        examples=[["body", "applicant", "id_number"]],
    )
    msg: str = Field(description="What is wrong with it.", examples=["bad check digit"])
    type: str = Field(
        description="The kind of problem, machine-readable: pydantic's (``missing``, "
        "``extra_forbidden``, ``string_too_long``, ``json_invalid``, ...) or onedoor's "
        "(``value_error.id_number``, ``value_error.phone``, ``value_error.unknown_item``, "
        "``value_error.wrong_applicant_kind``, ``value_error.form``, "
        "``value_error.too_large``, ``value_error.idempotency_key_reused``).",
        examples=["value_error.id_number"],
    )


class FieldProblems(BaseModel):
    """Every problem of the request at once, so the clerk fixes the form in one go."""

    detail: list[FieldProblem]


def _problem(description: str, **headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"model": Problem, "description": description}
    if headers:
        answer["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return answer


POST_CASES: dict[int | str, dict[str, Any]] = {
    201: {
        "model": Receipt,
        "description": "The case is accepted: stored, and its CaseAccepted event is in "
        "the outbox, on its way to cases.accepted.",
    },
    200: {
        "model": Receipt,
        "description": "A retry: this Idempotency-Key already filed this very request "
        "(same body, same clerk); the answer is that case, and nothing new is stored.",
        "headers": {
            "Idempotent-Replayed": {
                "description": "``true`` on a replayed answer.",
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
    },
    400: {
        "model": FieldProblems,
        "description": "The body does not decode: not UTF-8, not JSON, nested deeper than "
        "32 levels, or an integer of more than 30 digits (``type``: "
        '``body_undecodable``, ``loc``: ``["body"]``).',
    },
    401: _problem(
        "No access token, or a bad or expired one. Decided before the body is read.",
        **{"WWW-Authenticate": "``Bearer``"},
    ),
    403: _problem(
        "A good token of another role (not a clerk), or a clerk of another centre or "
        "without a window. Decided before the body is read."
    ),
    409: _problem("Two requests with one Idempotency-Key raced; retry with the same key."),
    413: _problem(
        "The body is over intake's limit, derived from ``ONEDOOR_MAX_RECORD_BYTES`` "
        "(shared/platform/limits.py: the largest form plus 8 KiB); the body is not read "
        "past the limit. ``detail`` names the limit in bytes."
    ),
    422: {
        "model": FieldProblems,
        "description": "The request's problems, each with its field: the body's shape "
        "(under ``body``), the applicant's ID number and phone, the item, the applicant "
        "kind, the item's form fields and sizes, a too-long Idempotency-Key or one used "
        "for a different request (under ``header``). A body naming ``window_id`` or "
        "``operator_id`` is refused (``extra_forbidden``): they come from the token.",
    },
    503: _problem(
        "The case store is away; retry shortly with the same Idempotency-Key.",
        **{"Retry-After": "Seconds to wait before retrying."},
    ),
}


# ------------------------------------------------------------------ the other routes
# What each answers beyond its 2xx and FastAPI's own 422 (a body, a path or a header
# that does not validate), so the document lists every status the API can send.

_NO_TOKEN = _problem("No access token, or a bad or expired one.", **{"WWW-Authenticate": "Bearer"})
_TOO_MANY = _problem(
    "Too many attempts from this address or for this account: wait and retry.",
    **{"Retry-After": "Seconds to wait."},
)
_NOT_RECORDED = _problem(
    "The read could not be recorded as a PersonalDataAccessed event (the store is away): "
    "nothing is shown until it is; retry shortly.",
    **{"Retry-After": "Seconds to wait."},
)

SIGN_IN: dict[int | str, dict[str, Any]] = {
    401: _problem("Bad name or password, or the account is disabled."),
    429: _TOO_MANY,
}
REFRESH: dict[int | str, dict[str, Any]] = {
    401: _problem("The refresh token is unknown, expired or revoked."),
}
GET_CASE: dict[int | str, dict[str, Any]] = {
    401: _NO_TOKEN,
    403: _problem("Another role, or a clerk of another centre."),
    404: _problem("No case with this id."),
    503: _NOT_RECORDED,
}
CITIZEN_CODE: dict[int | str, dict[str, Any]] = {
    429: _TOO_MANY,
    503: _problem(
        "The notifier cannot deliver the code now; retry later.",
        **{"Retry-After": "Seconds to wait."},
    ),
}
CITIZEN_SESSION: dict[int | str, dict[str, Any]] = {
    401: _problem("Wrong, spent or expired code, or no such receipt."),
    429: _TOO_MANY,
}
CITIZEN_CASE: dict[int | str, dict[str, Any]] = {
    401: _NO_TOKEN,
    403: _problem("A token that is not a citizen's."),
    404: _problem("The case the token names does not exist."),
    503: _NOT_RECORDED,
}
HEALTH: dict[int | str, dict[str, Any]] = {
    503: {"description": "The database is away: the same body, with ``database: false``."},
}
