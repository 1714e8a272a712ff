"""Start-up waits out a dependency that is away, with back-off and jitter, and never
gives up on a transient error (shared.platform.runtime.wait_for_dependency)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
import structlog
from aiokafka.errors import KafkaConnectionError

from shared.platform import runtime

pytestmark = pytest.mark.unit


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("shared.platform.runtime.asyncio.sleep", sleep)
    return slept


def failing(errors: list[Exception]) -> Any:
    async def step() -> str:
        if errors:
            raise errors.pop(0)
        return "done"

    return step


async def test_transient_errors_are_waited_out_far_past_the_old_limit(pauses: list[float]) -> None:
    errors: list[Exception] = [ConnectionRefusedError("pg away")] * 40
    errors += [asyncpg.CannotConnectNowError("starting"), KafkaConnectionError("broker away")]
    step = failing(list(errors))
    assert await runtime.wait_for_dependency(step, structlog.get_logger()) == "done"
    assert len(pauses) == len(errors)
    assert max(pauses) <= 15.0  # 10 s at most, jittered by up to half
    assert len(set(pauses[-10:])) > 1  # jitter: restarted replicas do not knock in step


async def test_a_real_error_is_not_retried(pauses: list[float]) -> None:
    step = failing([ValueError("a bug, not an outage")])
    with pytest.raises(ValueError, match="a bug"):
        await runtime.wait_for_dependency(step, structlog.get_logger())
    assert pauses == []


async def test_a_bounded_wait_gives_up(pauses: list[float]) -> None:
    step = failing([ConnectionRefusedError("away")] * 5)
    with pytest.raises(ConnectionRefusedError):
        await runtime.wait_for_dependency(step, structlog.get_logger(), attempts=3)
    assert len(pauses) == 2
