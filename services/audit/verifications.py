"""The audit service's own verify runs, for the dashboard's "last verification".

At start and then every ``ONEDOOR_AUDIT_VERIFY_EVERY_S`` the service runs
``onedoor-audit verify --json --processes 1`` as a child process (its own memory, its own
interpreter: the replay's CPU-bound work never stalls the service's ingest or its
HTTP answers; the child inherits the service's niceness and its settings), and keeps
the result in ``verify_runs``. A run's result is derived from the log: anyone may make
it again with the same command. The auditor's read-only role reads the table; only the
audit's own role writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from shared.contracts.events import utcnow
from shared.platform.db import Connection
from shared.platform.settings import Settings

log = structlog.get_logger("audit.verifications")
KEPT_DETAILS = 500  # violations kept per run (the count is always whole)
_COMMAND = ("-m", "services.audit.cli", "verify", "--json", "--processes", "1")


def outcome(
    exit_code: int, stdout: bytes, stderr: bytes
) -> tuple[dict[str, Any] | None, str | None]:
    """A child's report (``verify --json``, details cut to :data:`KEPT_DETAILS`), or why
    there is none (its last words on stderr)."""
    if exit_code in (0, 1):
        try:
            report: dict[str, Any] = json.loads(stdout)
        except ValueError:
            return None, f"verify printed no JSON report (exit {exit_code})"
        report["details"] = report.get("details", [])[:KEPT_DETAILS]
        return report, None
    words = stderr.decode("utf-8", "replace").strip().splitlines()
    return None, (words[-1] if words else f"verify exited with {exit_code}")[:500]


async def keep(
    conn: Connection,
    *,
    started: datetime,
    finished: datetime,
    exit_code: int,
    report: dict[str, Any] | None,
    problem: str | None,
) -> None:
    await conn.execute(
        """INSERT INTO verify_runs (started_at, finished_at, exit_code, report, problem)
           VALUES ($1, $2, $3, $4, $5)""",
        started,
        finished,
        exit_code,
        report,  # the pool's JSON codec encodes it
        problem,
    )


async def last_run(conn: Connection) -> dict[str, Any] | None:
    """The newest verify run (its report and times), or None before the first."""
    row = await conn.fetchrow(
        "SELECT started_at, finished_at, exit_code, report, problem "
        "FROM verify_runs ORDER BY id DESC LIMIT 1"
    )
    if row is None:
        return None
    report = row["report"]
    if isinstance(report, str):
        report = json.loads(report)
    return {
        "started_at": row["started_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat(),
        "exit_code": row["exit_code"],
        "report": report,
        "problem": row["problem"],
    }


class VerifySchedule:
    """Runs verify at start and every ``settings.audit_verify_every_s`` (0: never)."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.every = settings.audit_verify_every_s
        self.pool = pool
        self._task: asyncio.Task[None] | None = None
        self._child: asyncio.subprocess.Process | None = None

    def start(self) -> None:
        """Start the schedule on the running event loop (the service's runner builds
        the HTTP app inside it); nothing starts where no loop runs (an app built to be
        looked at, as the wiring tests do)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self.every > 0 and self._task is None:
            self._task = loop.create_task(self._run(), name="verify-schedule")

    async def close(self) -> None:
        if self._child is not None and self._child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._child.kill()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("verify run not kept", error=f"{type(exc).__name__}: {exc}")
            # A schedule, not a synchronisation: the next run is due this long after.
            await asyncio.sleep(self.every)

    async def run_once(self) -> None:
        started = utcnow()
        self._child = await asyncio.create_subprocess_exec(
            sys.executable,
            *_COMMAND,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await self._child.communicate()
        code = self._child.returncode if self._child.returncode is not None else 2
        report, problem = outcome(code, stdout, stderr)
        async with self.pool.acquire() as conn:
            await keep(
                conn,
                started=started,
                finished=utcnow(),
                exit_code=code,
                report=report,
                problem=problem,
            )
        log.info(
            "verify run kept",
            exit_code=code,
            violations=None if report is None else report.get("violations"),
            problem=problem,
        )
