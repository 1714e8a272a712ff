"""One decoder for record values: bytes in, an event or the reason it is not one.

:func:`decode_record` gives exactly :func:`shared.contracts.events.parse_event`'s
verdict (the same event, or an :class:`EventDecodeError` with the same message), but
returns the error instead of raising it, and takes the usual record through one
validator built from every registered class: pydantic-core reads the JSON bytes and
builds the event in one pass, without a Python dict in between. Replays and the audit's
ingest decode every record of the log, so that pass is what they pay per record.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal, Union

from pydantic import Field, Strict, TypeAdapter, create_model
from pydantic_core import from_json

from shared.contracts.events import Event, EventDecodeError, parse_event, registry

__all__ = ["decode_record"]


def _decode_exact(value: bytes) -> Event | EventDecodeError:
    """parse_event's verdict, returned instead of raised.

    pydantic-core's JSON reader is faster than ``json.loads``; anything it refuses goes
    to parse_event untouched, so the verdict and its reason are always parse_event's.
    """
    try:
        data = from_json(value)
    except ValueError:
        data = None
    try:
        return parse_event(data if isinstance(data, dict) else value)
    except EventDecodeError as exc:
        return exc


def _wire_model(cls: type[Event]) -> type[Event]:
    """``cls`` as it travels: ``event_type`` and ``schema_version`` become (excluded)
    fields beside the others, so one validator takes the record's JSON bytes straight
    to a ``cls`` instance (a subclass: isinstance, attributes and to_dict all agree).

    It accepts no more than parse_event does: the type must be this one, the version
    exactly the current one (a strict int, so neither ``true`` nor ``1.0``; older
    versions need parse_event's upcasters), every other field is ``cls``'s own with
    ``cls``'s config (``extra="forbid"`` included).
    """
    version = cls.schema_version
    tag: Any = Literal[cls.event_type]  # a type built at run time, one per event type
    wire: type[Event] = create_model(
        f"_Wire{cls.__name__}",
        __base__=cls,
        __module__=__name__,
        wire_event_type=(tag, Field(alias="event_type", exclude=True)),
        wire_schema_version=(
            Annotated[int, Strict()],
            Field(alias="schema_version", exclude=True, ge=version, le=version),
        ),
    )
    return wire


def _wire_validator(classes: Iterable[type[Event]]) -> Any:
    # A model validator would see the wire fields too: such a class keeps to parse_event.
    wires: Any = tuple(
        _wire_model(cls) for cls in classes if not cls.__pydantic_decorators__.model_validators
    )
    union: Any = Annotated[Union[wires], Field(discriminator="wire_event_type")]  # noqa: UP007
    return TypeAdapter(union).validator


# Every event type registered when this module was imported; a record of any other
# type (or version, or shape) takes parse_event's path and gets its exact verdict.
_WIRE = _wire_validator(registry.classes().values())


def decode_record(value: bytes) -> Event | EventDecodeError:
    """The event a record's value holds, or the :class:`EventDecodeError` that
    :func:`parse_event` raises for it (returned, not raised).

    The usual record goes through the one-pass wire validator, which accepts only what
    parse_event accepts, with the same field values; whatever it refuses goes to
    parse_event for its own verdict and message.
    """
    try:
        event: Event = _WIRE.validate_json(value)
    except ValueError:
        return _decode_exact(value)
    return event
