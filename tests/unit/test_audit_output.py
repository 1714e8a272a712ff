"""onedoor-audit prints with rich where it is installed and as plain text where it is not
(rich is a terminal extra, not a runtime dependency of the audit's production CLI)."""

from __future__ import annotations

import io
import subprocess
import sys
from uuid import uuid4

import pytest

from services.audit.output import Terminal, print_verify_report, progress_bar, rich_available
from services.audit.verifier.report import OVERDUE, VerifyReport, Violation

pytestmark = pytest.mark.unit

# Run first in a child interpreter: any import of rich fails there, as where it is absent.
NO_RICH = """
import importlib.abc, sys
class NoRich(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "rich" or name.startswith("rich."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, NoRich())
"""


def report() -> VerifyReport:
    case = uuid4()
    late = Violation(OVERDUE, case, uuid4(), "cases.accepted", 1, 7, "open past its promise")
    return VerifyReport(
        records=12, events=11, cases=3, violations=[late], seconds=2.0, read_seconds=1.5
    )


def test_without_rich_the_verify_report_is_a_plain_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)  # import rich fails from here on
    assert not rich_available()
    stream = io.StringIO()
    print_verify_report(report(), Terminal(stream))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "onedoor-audit verify"
    assert lines[1].split() == ["records", "read", "12"]
    assert lines[6].startswith("  overdue ")
    assert lines[6].split() == ["overdue", "1"]
    assert any(line.startswith("ERROR overdue") and "cases.accepted/1@7" in line for line in lines)
    assert lines[-1] == "1 violation(s)"  # the markup is dropped, not printed
    assert "[" not in stream.getvalue().replace("[0]", "")


def test_without_rich_tables_line_up_and_numbers_go_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)
    stream = io.StringIO()
    Terminal(stream).table(
        [("HR-JOB", "3", "12"), ("SS-UNEMPLOYMENT-BENEFIT", "10", "1")],
        columns=("key", "accepted", "open"),
        title="per item",
        right=("accepted", "open"),
    )
    assert stream.getvalue().splitlines() == [
        "per item",
        "key                      accepted  open",
        "-----------------------  --------  ----",
        "HR-JOB                          3    12",
        "SS-UNEMPLOYMENT-BENEFIT        10     1",
    ]


def test_without_rich_progress_is_silent_off_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)
    with progress_bar(quiet=False) as on_progress:
        assert on_progress is None  # stderr is not a terminal under pytest
    assert capsys.readouterr().err == ""


def test_the_cli_runs_where_rich_cannot_be_imported() -> None:
    code = NO_RICH + (
        "from services.audit.cli import main\n"
        "code = main(['history', 'not-a-case-id'])\n"
        "assert 'rich' not in sys.modules, 'rich was imported'\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "not a case id: 'not-a-case-id' (a UUID, as returned by POST /cases)"
    )


def test_with_rich_the_table_is_richs() -> None:
    if not rich_available():  # the dev environment installs it; production need not
        pytest.fail("the dev environment should have rich installed")
    from rich.console import Console  # noqa: PLC0415 - optional dependency

    console = Console(file=io.StringIO(), width=120, color_system=None)
    print_verify_report(report(), Terminal(console=console))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "onedoor-audit verify" in text
    assert "│" in text or "┃" in text  # drawn by rich, with box characters
    assert "1 violation(s)" in text
