"""Process plumbing that needs no broker or database."""

from __future__ import annotations

import subprocess
import sys


def test_lower_cpu_priority_raises_the_niceness_and_never_lowers_it() -> None:
    # In a child process: a niceness once raised cannot be lowered again without
    # privileges, and the test runner must keep its own.
    code = (
        "import os; from shared.runtime import lower_cpu_priority as lower;"
        "base = os.getpriority(os.PRIO_PROCESS, 0);"
        "print(base, *[lower(base + n) for n in (0, 5, 2, 7)])"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    base, *after = (int(n) for n in out.stdout.split())
    assert after == [base, base + 5, base + 5, base + 7]
