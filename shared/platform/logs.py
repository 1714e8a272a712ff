"""structlog set-up shared by every service.

JSON lines when stderr is not a terminal, readable console output when it is. The
standard library's loggers (aiokafka, FastStream, uvicorn) are routed through the same
processors, so personal data is masked wherever a line comes from. Bind the case id
with ``structlog.contextvars.bound_contextvars(case_id=...)`` and every line inside
carries it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

# An 18-character resident ID (17 digits + digit or X), a 15-digit one of the old
# format, and an 11-digit mainland mobile number, also after the country code (86,
# +86). Matched anywhere in a line, not only in known fields, and right after a letter
# ("ID110105..."): a message text or an exception may carry one too. ASCII digits only
# ([0-9], not \d, which takes every script's digits). Each is kept recognisable by its
# ends only.
_RESIDENT_ID = re.compile(r"(?<![0-9])([0-9]{3})[0-9]{11}([0-9]{3}[0-9Xx])(?![0-9])")
_OLD_RESIDENT_ID = re.compile(r"(?<![0-9])([0-9]{3})[0-9]{8}([0-9]{4})(?![0-9])")
_PHONE = re.compile(r"(?<![0-9])((?:\+?86[- ]?)?1[3-9][0-9])[0-9]{4}([0-9]{4})(?![0-9])")


def mask_text(text: str) -> str:
    """Mask every resident ID number and mobile phone number found in text."""
    text = _RESIDENT_ID.sub(lambda m: f"{m.group(1)}{'*' * 11}{m.group(2)}", text)
    text = _OLD_RESIDENT_ID.sub(lambda m: f"{m.group(1)}{'*' * 8}{m.group(2)}", text)
    return _PHONE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_mask_value(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and value > 10**9:
        return mask_text(str(value))
    return value


def mask_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask personal numbers in every value, however deeply nested."""
    for key, value in event_dict.items():
        event_dict[key] = _mask_value(value)
    return event_dict


def configure_logging(
    service: str, *, level: str = "INFO", json: bool | None = None
) -> structlog.stdlib.BoundLogger:
    """Configure structlog and stdlib logging once per process; return the service logger."""
    render_json = (not sys.stderr.isatty()) if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_personal_data,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if render_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # Lines from stdlib loggers get the same treatment, masking included.
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    structlog.contextvars.bind_contextvars(service=service)
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(service)
    return logger
