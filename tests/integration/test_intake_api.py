"""Intake's HTTP edge in-process, on the real broker and database."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from fastapi.testclient import TestClient

from services.intake.acceptor import Acceptor
from services.intake.api import create_app
from shared.settings import Settings
from tests.e2e.harness import case_body, person
from tests.e2e.test_pipeline import BENEFIT_FORM

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "failure",
    [
        asyncpg.exceptions.InternalClientError("the server went away mid-exchange"),
        TimeoutError(),
        ConnectionResetError("connection reset by peer"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_store_lost_mid_request_answers_503_with_retry_after(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    async def lost(*_: Any, **__: Any) -> dict[str, Any]:
        raise failure

    monkeypatch.setattr(Acceptor, "accept", lost)
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/cases", json=case_body("SS-UNEMPLOYMENT-BENEFIT", person(), BENEFIT_FORM)
        )
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert type(failure).__name__ in response.json()["detail"]
