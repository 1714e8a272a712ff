"""Process plumbing that needs no broker or database."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def test_lower_cpu_priority_raises_the_niceness_and_never_lowers_it() -> None:
    # In a child process: a niceness once raised cannot be lowered again without
    # privileges, and the test runner must keep its own.
    code = (
        "import os; from shared.platform.runtime import lower_cpu_priority as lower;"
        "base = os.getpriority(os.PRIO_PROCESS, 0);"
        "print(base, *[lower(base + n) for n in (0, 5, 2, 7)])"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    base, *after = (int(n) for n in out.stdout.split())
    assert after == [base, base + 5, base + 5, base + 7]


def test_freeze_heap_sets_the_live_heap_aside_from_the_collector() -> None:
    # In a child process: frozen objects stay frozen for the rest of the process.
    code = (
        "import gc; from shared.platform.runtime import freeze_heap;"
        "kept = [[i] for i in range(50_000)];"
        "assert gc.get_freeze_count() == 0;"
        "frozen = freeze_heap();"
        "print(frozen, gc.get_freeze_count(), sum(gc.get_count()), len(gc.get_objects()))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    frozen, count, pending, tracked = (int(n) for n in out.stdout.split())
    assert frozen == count > 50_000  # the start-up's objects, the kept lists among them
    assert pending < 100  # the collector starts afresh
    assert tracked < 1_000  # a full collection now walks next to nothing
