"""How a citizen's one-time code reaches their phone: a pluggable notifier.

``ONEDOOR_NOTIFIER`` chooses: ``file`` (the local stack and the tests) appends one JSON
line per message to ``ONEDOOR_NOTIFIER_FILE``; ``sms_gateway`` (production) posts
``{"to", "text"}`` to ``ONEDOOR_SMS_GATEWAY_URL`` with the bearer token read from
``ONEDOOR_SMS_GATEWAY_TOKEN_FILE``. Neither logs the phone number or the text (which
holds the code).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Protocol

import httpx
import structlog

from shared.contracts.identity import mask_phone
from shared.platform.settings import ConfigError, Settings

log = structlog.get_logger("intake.notifier")


class NotifierError(Exception):
    """The message could not be handed over (answered 503: retry later)."""


class Notifier(Protocol):
    async def send(self, phone: str, text: str) -> None:
        """Deliver ``text`` to ``phone``; NotifierError when it cannot."""


class FileNotifier:
    """Appends ``{"to", "to_masked", "text"}`` as one JSON line per message: what an SMS
    would have said, for the local stack and the tests to read. The file is created mode
    0600 (it holds codes and phone numbers)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def send(self, phone: str, text: str) -> None:
        line = json.dumps(
            {"to": phone, "to_masked": mask_phone(phone), "text": text}, ensure_ascii=False
        )
        try:
            await asyncio.to_thread(self._append, line + "\n")
        except OSError as exc:
            raise NotifierError(f"the notifier file cannot be written ({exc.strerror})") from exc

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(line)


class SmsGatewayNotifier:
    """Posts ``{"to", "text"}`` as JSON to an SMS gateway (bearer token from a file);
    any answer but 2xx, a timeout or a network error is a NotifierError."""

    def __init__(self, url: str, token: str | None, *, timeout_s: float) -> None:
        self.url = url
        self._token = token
        self._timeout_s = timeout_s

    async def send(self, phone: str, text: str) -> None:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                answer = await client.post(
                    self.url, json={"to": phone, "text": text}, headers=headers
                )
        except httpx.HTTPError as exc:
            log.warning("sms gateway unreachable", error=type(exc).__name__)
            raise NotifierError(f"the SMS gateway is unreachable ({type(exc).__name__})") from exc
        if not answer.is_success:
            log.warning("sms gateway refused", status=answer.status_code)
            raise NotifierError(f"the SMS gateway answered {answer.status_code}")


def from_settings(settings: Settings) -> Notifier:
    """The notifier ``ONEDOOR_NOTIFIER`` names; ConfigError naming the missing setting."""
    if settings.notifier == "file":
        return FileNotifier(settings.notifier_file)
    if not settings.sms_gateway_url:
        raise ConfigError("ONEDOOR_NOTIFIER=sms_gateway needs ONEDOOR_SMS_GATEWAY_URL")
    token = None
    if settings.sms_gateway_token_file is not None:
        try:
            token = settings.sms_gateway_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"ONEDOOR_SMS_GATEWAY_TOKEN_FILE cannot be read ({exc.strerror})"
            ) from exc
    return SmsGatewayNotifier(
        settings.sms_gateway_url, token, timeout_s=settings.sms_gateway_timeout_s
    )
