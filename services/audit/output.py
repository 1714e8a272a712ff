"""Where ``onedoor-audit`` prints: tables, lines and a progress bar, through rich when it
is installed (a terminal extra, not a runtime dependency) and as plain text otherwise.

rich is imported here only, and only when something is printed: the audit CLI is a
production tool and runs where rich is not installed.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from services.audit.verifier.log import Progress
from services.audit.verifier.report import VerifyReport

_MARKUP = re.compile(r"\[/?[a-z ]*\]")


def rich_available() -> bool:
    try:
        import rich  # noqa: F401, PLC0415 - optional: only where it is installed
    except ImportError:
        return False
    return True


class Terminal:
    """One output stream. With rich: a rich Console on it (or the console handed in);
    without: plain text, markup such as ``[green]...[/]`` dropped."""

    def __init__(self, stream: TextIO | None = None, *, console: Any = None) -> None:
        self._stream = stream
        self._console = console
        if console is None and rich_available():
            from rich.console import Console  # noqa: PLC0415 - optional dependency

            self._console = Console(file=stream) if stream is not None else Console()

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def line(self, text: str) -> None:
        """One line; rich markup is rendered by rich and dropped in plain text."""
        if self._console is not None:
            self._console.print(text)
        else:
            print(_MARKUP.sub("", text), file=self.stream)

    def table(
        self,
        rows: Sequence[Sequence[str]],
        *,
        columns: Sequence[str] = (),
        title: str | None = None,
        right: Sequence[str] = (),
    ) -> None:
        """A table: ``columns`` are the headers (none: no header row); columns named in
        ``right`` are right-justified."""
        if self._console is not None:
            from rich.table import Table  # noqa: PLC0415 - optional dependency

            table = Table(title=title, show_header=bool(columns))
            for column in columns:
                table.add_column(column, justify="right" if column in right else "left")
            for row in rows:
                table.add_row(*row)
            self._console.print(table)
            return
        self._plain_table(rows, columns, title, right)

    def _plain_table(
        self,
        rows: Sequence[Sequence[str]],
        columns: Sequence[str],
        title: str | None,
        right: Sequence[str],
    ) -> None:
        every = [list(columns), *map(list, rows)] if columns else [list(r) for r in rows]
        if not every:
            return
        width = max(len(r) for r in every)
        sizes = [max(len(r[i]) if i < len(r) else 0 for r in every) for i in range(width)]
        names = list(columns) + [""] * (width - len(columns))

        def render(row: Sequence[str]) -> str:
            cells = [
                (cell.rjust if names[i] in right else cell.ljust)(sizes[i])
                for i, cell in enumerate(list(row) + [""] * (width - len(row)))
            ]
            return "  ".join(cells).rstrip()

        if title:
            print(title, file=self.stream)
        if columns:
            print(render(columns), file=self.stream)
            print("  ".join("-" * size for size in sizes), file=self.stream)
        for row in rows:
            print(render(row), file=self.stream)


@contextmanager
def progress_bar(quiet: bool, label: str = "replaying the log") -> Iterator[Progress | None]:
    """A progress callback ``(done, total)`` drawn on stderr: rich's transient bar when
    rich is installed, a plain line rewritten at most every second on a terminal
    without it, nothing when ``quiet``."""
    if quiet:
        yield None
        return
    if rich_available():
        from rich.console import Console  # noqa: PLC0415 - optional dependency
        from rich.progress import (  # noqa: PLC0415 - optional dependency
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            task = bar.add_task("read", total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total or None)
        return
    if not sys.stderr.isatty():
        yield None
        return
    shown = [0.0]

    def plain(done: int, total: int) -> None:
        now = time.monotonic()
        if now - shown[0] >= 1.0:
            shown[0] = now
            print(f"\r{label}: {done:,}/{total:,} records", end="", file=sys.stderr, flush=True)

    try:
        yield plain
    finally:
        if shown[0]:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def verify_json(report: VerifyReport) -> dict[str, Any]:
    """``onedoor-audit verify --json``."""
    errors = report.errors()
    return {
        "records": report.records,
        "events": report.events,
        "cases": report.cases,
        "violations": len(errors),
        "flags": len(report.violations) - len(errors),
        "by_kind": report.by_kind(),
        "seconds": round(report.seconds, 3),
        "events_per_s": round(report.events_per_second()),
        "processes": report.processes,
        "signatures_checked": report.signatures_checked,
        "signatures_reused": report.signatures_reused,
        "store_compared": report.store_compared,
        "store_notes": report.store_notes,
        "details": [v.to_json() for v in report.violations],
    }


def print_verify_report(
    report: VerifyReport, out: Terminal, *, signatures: bool = True, flags: bool = False
) -> None:
    """The table ``onedoor-audit verify`` prints, each error (each flag too with
    ``flags``), and the verdict line. ``signatures=False``: they were not checked."""
    errors = report.errors()
    rows = [
        ("records read", str(report.records)),
        ("distinct events", str(report.events)),
        ("cases", str(report.cases)),
        ("violations", str(len(errors))),
        ("flags (not errors)", str(len(report.violations) - len(errors))),
        *((f"  {kind}", str(n)) for kind, n in sorted(report.by_kind().items())),
        (
            "signatures",
            f"{report.signatures_checked} checked now, "
            f"{report.signatures_reused} verified at ingest (identical bytes)"
            if signatures
            else "not checked (--no-signatures)",
        ),
        (
            "replay time (s)",
            f"{report.seconds:.2f} (reading {report.read_seconds:.2f}; "
            f"{report.processes} process(es))",
        ),
        ("events per second", f"{report.events_per_second():,.0f}"),
        (
            "store vs log",
            "compared both ways" if report.store_compared else "not compared (store unreachable)",
        ),
    ]
    out.table(rows, title="onedoor-audit verify")
    for v in report.violations if flags else errors:
        case = v.case_id or "-"
        out.line(
            f"{v.severity.upper():5} {v.kind:26} case {case} event {v.event_id or '-'} "
            f"at {v.topic}/{v.partition}@{v.offset}: {v.detail}"
        )
    for note in report.store_notes:
        out.line(f"note: {note}")
    out.line("[green]zero violations[/]" if not errors else f"[red]{len(errors)} violation(s)[/]")
