"""Why a record could not be turned into an event (re-exported by shared.contracts.events,
where every caller imports them from)."""

from __future__ import annotations

from typing import ClassVar


class EventDecodeError(ValueError):
    """A record could not be turned into an event; ``reason`` is the machine-readable kind."""

    reason: ClassVar[str] = "malformed"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.reason}: {message}")
        self.detail = message


class MalformedEventError(EventDecodeError):
    reason = "malformed"


class UnknownEventTypeError(EventDecodeError):
    reason = "unknown_event_type"


class UnsupportedSchemaVersionError(EventDecodeError):
    reason = "unsupported_schema_version"
