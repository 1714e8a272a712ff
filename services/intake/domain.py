"""Intake's rules: what a window may submit, checked before anything is written.

Every problem is reported at once, each with the field it concerns, so the clerk can
fix the form in one go.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.intake import inputs
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import Applicant
from shared.contracts.identity import validate_mobile, validate_resident_id, validate_uscc
from shared.platform.limits import Limits, form_size, json_size

FieldError = inputs.FieldError  # (location, message, type)


class CaseRequest(BaseModel):
    """What a window or the mobile terminal submits. The window and the clerk come from
    the clerk's access token: a body that names ``window_id`` or ``operator_id`` is
    refused (422, ``extra_forbidden``), so nobody files in another window's name."""

    model_config = ConfigDict(extra="forbid")

    item_code: str = Field(min_length=1, max_length=80, examples=["SS-UNEMPLOYMENT-BENEFIT"])
    applicant: Applicant
    # ASCII digits only (\d would take full-width and other scripts' digits).
    community_code: str = Field(pattern=r"^[0-9]{9,12}$", examples=["110105001001"])
    form: dict[str, Any] = Field(default_factory=dict)
    channel: Literal["window", "mobile"] = "window"

    def fingerprint(self, clerk: str = "") -> str:
        """Hash of the request and who sent it, to tell a retry from a different request
        under one key (another clerk's request with the same body is a different one)."""
        fields = self.model_dump(mode="json") | {"_clerk": clerk}
        body = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()


def check(
    request: CaseRequest, catalogue: Catalogue, limits: Limits | None = None
) -> list[FieldError]:
    """Every problem of the request beyond its shape (which pydantic already checked),
    its size against ``limits`` (shared.platform.limits) included."""
    errors: list[FieldError] = [] if limits is None else size_errors(request.form, limits)
    applicant = request.applicant
    errors += inputs.text_errors(
        {
            ("body", "item_code"): request.item_code,
            ("body", "applicant", "name"): applicant.name,
            ("body", "applicant", "id_number"): applicant.id_number,
            ("body", "applicant", "phone"): applicant.phone,
        },
        request.form,
    )
    id_error = (
        validate_resident_id(applicant.id_number)
        if applicant.kind == "natural"
        else validate_uscc(applicant.id_number)
    )
    if id_error:
        errors.append((("body", "applicant", "id_number"), id_error, "value_error.id_number"))
    phone_error = validate_mobile(applicant.phone)
    if phone_error:
        errors.append((("body", "applicant", "phone"), phone_error, "value_error.phone"))
    item = catalogue.get(request.item_code)
    if item is None:
        errors.append(
            (
                ("body", "item_code"),
                f"unknown item {request.item_code!r}",
                "value_error.unknown_item",
            )
        )
        return _first_per_field(errors)
    if item.applicant_kind != applicant.kind:
        errors.append(
            (
                ("body", "applicant", "kind"),
                f"item {item.code} is for {item.applicant_kind} persons",
                "value_error.wrong_applicant_kind",
            )
        )
    for name, message in sorted(item.validate_form(request.form).items()):
        kind = "missing" if "required" in message else "value_error.form"
        errors.append((("body", "form", name), message, kind))
    return _first_per_field(errors)


def _first_per_field(errors: list[FieldError]) -> list[FieldError]:
    """One problem per field: a name with a NUL is not also reported as malformed."""
    seen: set[tuple[str | int, ...]] = set()
    kept = []
    for error in errors:
        if error[0] not in seen:
            seen.add(error[0])
            kept.append(error)
    return kept


def size_errors(form: dict[str, Any], limits: Limits) -> list[FieldError]:
    """The form, and each of its fields, against the size budget, measured as the events
    will carry them: a case whose form fits travels the whole pipeline."""
    size = form_size(form)
    if size <= limits.form_field:
        return []  # the usual case: one measure, no field is larger than the whole
    errors: list[FieldError] = [
        (
            ("body", "form", name),
            f"the field is {n} bytes, over the limit of {limits.form_field} bytes"
            " for one form field",
            "value_error.too_large",
        )
        for name, value in form.items()
        if (n := json_size(value)) > limits.form_field
    ]
    if size > limits.form:
        message = f"the form is {size} bytes, over the limit of {limits.form} bytes"
        errors.append((("body", "form"), message, "value_error.too_large"))
    return errors
