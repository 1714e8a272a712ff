"""Waiting on a condition with a deadline: the one way tests wait.

A test never sleeps for a fixed time and hopes; it names what it waits for and polls
for it (a short interval, inside a deadline), and fails with that name when the
deadline passes.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

INTERVAL_S = 0.1


@overload
async def wait_for(  # an async condition is awaited, its result returned
    condition: Callable[[], Awaitable[T | None]],
    seconds: float,
    what: str,
    *,
    interval: float = ...,
) -> T: ...


@overload
async def wait_for(
    condition: Callable[[], T | None], seconds: float, what: str, *, interval: float = ...
) -> T: ...


async def wait_for(
    condition: Callable[[], Any], seconds: float, what: str, *, interval: float = INTERVAL_S
) -> Any:
    """Call ``condition`` (plain or async) until it returns a truthy value, and return
    that value; raise AssertionError naming ``what`` (and the last value) once ``seconds``
    seconds have passed."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not in {seconds:g} s: {what} (last: {value!r})")
        await asyncio.sleep(interval)


def wait_for_sync(
    condition: Callable[[], T | None], seconds: float, what: str, *, interval: float = INTERVAL_S
) -> T:
    """:func:`wait_for` for code outside an event loop (fixtures that start processes)."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not in {seconds:g} s: {what} (last: {value!r})")
        time.sleep(interval)
