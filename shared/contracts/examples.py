"""An example of every event, made from the models themselves: what the AsyncAPI document
shows departments (``docs/asyncapi.yaml``).

Each field takes, in this order: the first of its ``Field(examples=...)``, a value this
page knows for fields of that name across events, its default, or a value of its type.
The result is validated by the model, so an example is always a record that
:func:`~shared.contracts.events.parse_event` accepts. Every example belongs to one
case: an unemployment benefit claim, accepted at window W01 of centre C01, whose first
step is HR's job registration. A new event needs nothing here: give its fields
``examples`` where a value of the type says too little.
"""

from __future__ import annotations

import types
import typing
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any, Literal, Union
from uuid import UUID, uuid5

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from shared.contracts.events import CaseAccepted, Event

EXAMPLE_DEPARTMENT = "hr_registration"
_NAMESPACE = UUID("6f0b1d8e-0c4a-4f57-9d0e-0d00d0000001")
CASE_ID = uuid5(_NAMESPACE, "case")
ACCEPTED_ID = uuid5(_NAMESPACE, CaseAccepted.event_type)
OCCURRED_AT = datetime(2025, 3, 3, 1, 30, tzinfo=UTC)  # 09:30 at the centre (UTC+8)

# Values for fields of these names in any event (the first step of the example case).
_BY_NAME: dict[str, Any] = {
    "item_code": "SS-UNEMPLOYMENT-BENEFIT",
    "department": EXAMPLE_DEPARTMENT,
    "action": "job_registration",
    "step_index": 0,
    "community_code": "110105001001",
    "centre_id": "C01",
    "window_id": "W01",
    "operator_id": "clerk-017",
    "receipt_no": "C01-20250303-0001",
    "catalogue_version": "2026.11.1+3f9a2c1d",
    "applicant_id": "11010519491231002X",
    "name": "李华 Li Hua",
    "applicant_kind": "natural",
    "form": {
        "last_employer": "Beijing Example Trading Co., Ltd.",
        "separation_date": "2025-02-28",
        "insured_months": 36,
        "education": "bachelor",
        "desired_occupation": "accountant",
    },
    "facts": {"registration_no": "HR-2025-000123"},
    "reference": "HR-2025-000123",
    "message": "已登记失业。 / Registered as unemployed.",
    "missing": ["separation_date"],
    "reason_code": "already_registered",
    "promised_by": OCCURRED_AT + timedelta(days=14),
    "due_by": OCCURRED_AT + timedelta(days=5),
    "warn_at": OCCURRED_AT + timedelta(days=4),
    "working_days": 10,
    "operator": "ops-01",
    "reason": "the consumer bug that refused it is fixed in release 1.4.2",
    "dlq_topic": "dept.hr_registration.tasks.dlq",
    "original_topic": "dept.hr_registration.tasks",
}


class ExampleError(ValueError):
    """No valid example could be made for an event: its fields need ``examples``."""


def example_event(cls: type[Event], producer: str) -> Event:
    """An instance of ``cls`` for the example case, emitted by ``producer``."""
    first = cls is CaseAccepted
    envelope: dict[str, Any] = {
        "event_id": ACCEPTED_ID if first else uuid5(_NAMESPACE, cls.event_type),
        "case_id": CASE_ID,
        "occurred_at": OCCURRED_AT,
        "producer": producer,
        "causation_id": None if first else ACCEPTED_ID,
        "correlation_id": ACCEPTED_ID,
    }
    values = _values(cls, envelope)
    try:
        return cls.model_validate(values)
    except ValueError as exc:
        raise ExampleError(
            f"no valid example of {cls.event_type}: give its fields Field(examples=[...]) "
            f"(shared/contracts/examples.py): {exc}"
        ) from None


def _values(model: type[BaseModel], given: dict[str, Any]) -> dict[str, Any]:
    return {
        name: given[name] if name in given else _value(name, field)
        for name, field in model.model_fields.items()
    }


def _value(name: str, field: FieldInfo) -> Any:
    if field.examples:
        return field.examples[0]
    if name in _BY_NAME:
        return _BY_NAME[name]
    if field.default is not PydanticUndefined or field.default_factory is not None:
        return field.get_default(call_default_factory=True, validated_data={})
    return _of_type(name, field.annotation)


def _of_type(name: str, annotation: Any) -> Any:  # noqa: PLR0911 - one answer per kind of type
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (Union, types.UnionType):
        return _of_type(name, args[0])
    if origin is Literal:
        return args[0]
    if origin in (tuple, list, set, frozenset):
        return [_of_type(name, args[0])] if args else []
    if origin is dict:
        return {}
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return _values(annotation, {})
        if issubclass(annotation, Enum):
            return next(iter(annotation)).value
        simple: dict[type, Any] = {
            bool: False,
            int: 0,
            float: 0.0,
            str: f"example {name}",
            UUID: uuid5(_NAMESPACE, name),
            datetime: OCCURRED_AT,
            date: OCCURRED_AT.date(),
        }
        for kind, value in simple.items():
            if issubclass(annotation, kind):
                return value
    raise ExampleError(f"no example value for {name}: {annotation!r}")
