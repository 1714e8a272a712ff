"""Load and accounting for the fault suite: submit cases over HTTP the way a window does
(retrying with the same Idempotency-Key when intake is away), then prove afterwards that
every accepted case closed exactly once, the audit verifies clean, and the audit store
holds every accepted case."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
from aiokafka import TopicPartition

from deploy.demo import build_requests
from services.audit.verifier.run import verify_log
from services.catalogue import default_catalogue
from shared.contracts.events import CaseClosed, EventDecodeError, parse_event
from shared.contracts.topology import CASES_ROUTING, dlq
from shared.messaging.kafka import read_to_end
from shared.platform.settings import Settings
from tests.e2e.harness import Pipeline
from tests.support.staff import CLERK, bearer, sign_in
from tests.support.waiting import wait_for


@dataclass
class Load:
    """Submits a realistic mix at a steady rate until stopped; remembers what was accepted."""

    pipeline: Pipeline
    rate_per_s: float = 20.0
    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> case id
    retries: int = 0
    refused: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def accepted_more(self, n: int, what: str, seconds: float = 60) -> int:
        """Wait until ``n`` more cases than now were accepted (``what``: the phase of the
        scenario they stand for); return how many are accepted then."""
        target = len(self.accepted) + n
        await wait_for(lambda: len(self.accepted) >= target, seconds, f"{n} more cases {what}")
        return len(self.accepted)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        requests = build_requests(default_catalogue(), 100_000, seed=int(time.time()))
        tag = uuid4().hex[:8]
        pending: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(
            base_url=self.pipeline.base, timeout=10, headers=self.pipeline.auth
        ) as client:
            for n, (body, _) in enumerate(requests):
                if self._stop.is_set():
                    break
                task = asyncio.create_task(self._submit(client, body, f"fault-{tag}-{n}"))
                pending.add(task)
                task.add_done_callback(pending.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1 / self.rate_per_s)
            if pending:
                await asyncio.gather(*pending)

    async def _submit(self, client: httpx.AsyncClient, body: dict[str, Any], key: str) -> None:
        """Like a window: keep retrying the same request with the same key (every 0.25 s)
        until answered."""

        async def answered() -> bool:
            try:
                resp = await client.post("/cases", json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError:
                resp = None
            if resp is not None and resp.status_code in (200, 201):
                self.accepted[key] = resp.json()["case_id"]
                return True
            if resp is not None and resp.status_code == 401:
                # The window's sign-in ran out: sign in again, then retry.
                token = (await sign_in(client, CLERK))["access_token"]
                client.headers.update(bearer(token))
            if resp is not None and resp.status_code == 422:
                self.refused += 1
                return True
            self.retries += 1
            return False

        await wait_for(answered, 120, f"request {key} answered", interval=0.25)


async def read_topic(settings: Settings, topic: str) -> list[Any]:
    name = settings.topic(topic)
    return await read_to_end(
        settings, [TopicPartition(name, p) for p in range(settings.topic_partitions)]
    )


@dataclass
class Outcome:
    accepted: int
    closed: int
    duplicates: int
    violations: int
    dlq: int
    missing_from_audit: int

    def line(self, scenario: str, injected: str) -> str:
        return (
            f"FAULT {scenario}: injected={injected!r} accepted={self.accepted} "
            f"closed={self.closed} duplicates={self.duplicates} violations={self.violations} "
            f"dlq={self.dlq} missing_from_audit={self.missing_from_audit}"
        )


async def account(
    pipeline: Pipeline,
    load: Load,
    database_url: str,
    *,
    dlq_topics: list[str],
    deadline_s: float = 120,
) -> Outcome:
    """Wait (with a deadline) until every accepted case is closed and in the audit store,
    then count: closes per case, violations, dead letters."""
    settings = pipeline.settings
    wanted = {UUID(c) for c in load.accepted.values()}
    deadline = time.monotonic() + deadline_s
    # Distinct close events per case: a relay re-send repeats an event id (harmless);
    # two different close events for one case would be a doubled case.
    closes: dict[UUID, set[UUID]] = defaultdict(set)

    async def all_closed() -> bool:
        closes.clear()
        for record in await read_topic(settings, CASES_ROUTING):
            try:
                event = parse_event(record.value)
            except EventDecodeError:
                continue  # poison written by the poison scenario; the DLQ count covers it
            if isinstance(event, CaseClosed):
                closes[event.case_id].add(event.event_id)
        return wanted <= closes.keys()

    # Past the deadline the counts below say what is missing, in the scenario's FAULT line.
    with contextlib.suppress(AssertionError):
        await wait_for(all_closed, deadline_s, "every accepted case closed", interval=0.5)
    closed_cases = set(closes)
    duplicates = sum(1 for c in wanted if len(closes[c]) > 1)
    audited = await _audited_cases(database_url, wanted, deadline)
    report = await verify_log(settings, check_signatures=True)
    dead = sum([len(await read_topic(settings, dlq(t))) for t in dlq_topics])
    return Outcome(
        accepted=len(wanted),
        closed=len(wanted & closed_cases),
        duplicates=duplicates,
        violations=len(report.errors()),
        dlq=dead,
        missing_from_audit=len(wanted - audited),
    )


async def _audited_cases(database_url: str, wanted: set[UUID], deadline: float) -> set[UUID]:
    conn = await asyncpg.connect(database_url)
    seen: set[UUID] = set()

    async def all_audited() -> bool:
        rows = await conn.fetch(
            "SELECT case_id FROM audit.events WHERE event_type = 'CaseAccepted'"
        )
        seen.clear()
        seen.update(r["case_id"] for r in rows)
        return wanted <= seen

    try:
        # Past the deadline the caller counts what is missing from the audit store.
        with contextlib.suppress(AssertionError):
            await wait_for(
                all_audited,
                max(0.0, deadline - time.monotonic()),
                "every case audited",
                interval=0.5,
            )
        return seen
    finally:
        await conn.close()
