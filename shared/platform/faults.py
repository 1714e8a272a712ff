"""Crash points for the fault-injection suite; inert unless a test setting enables them.

    ONEDOOR_FAULT_CRASH_POINT=after_commit_before_offsets   # consumer: DB committed, offsets not
    ONEDOOR_FAULT_CRASH_POINT=before_relay_publish          # relay: rows read, nothing sent
    ONEDOOR_FAULT_CRASH_POINT=after_relay_publish           # relay: sent, rows not marked sent
    ONEDOOR_FAULT_CRASH_POINT=deadlines_before_commit       # deadline clock: notices not committed
    ONEDOOR_FAULT_CRASH_AFTER=N                             # on the Nth time the point is reached

The process kills itself with SIGKILL, exactly as ``kill -9`` would: no finally blocks,
no flush, no graceful anything. With no crash point set, services hold no injector at all
(``from_settings`` returns None), so production code pays one ``is None`` check.
"""

from __future__ import annotations

import os
import signal

import structlog

from shared.platform.settings import Settings

CRASH_POINTS = frozenset(
    {
        "after_commit_before_offsets",
        "before_relay_publish",
        "after_relay_publish",
        "deadlines_before_commit",
    }
)


class FaultInjector:
    def __init__(self, point: str, after: int) -> None:
        if point not in CRASH_POINTS:
            raise ValueError(f"unknown crash point {point!r}; one of {sorted(CRASH_POINTS)}")
        self.point = point
        self.remaining = after

    @classmethod
    def from_settings(cls, settings: Settings) -> FaultInjector | None:
        if not settings.fault_crash_point:
            return None
        return cls(settings.fault_crash_point, settings.fault_crash_after)

    def reach(self, point: str) -> None:
        if point != self.point:
            return
        self.remaining -= 1
        if self.remaining <= 0:
            structlog.get_logger("faults").warning("injected crash", point=point)
            os.kill(os.getpid(), signal.SIGKILL)
