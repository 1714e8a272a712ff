"""End to end, as operators run it: the migrations Job first, traces of every case.

The six services start with ``ONEDOOR_MIGRATE_AT_START=false`` (the Kubernetes base's
setting) and wait; ``onedoor-migrate`` runs once, as the Job does; then cases go through.
Every service exports OpenTelemetry spans over OTLP/HTTP to a collector in this test (a
small HTTP server decoding the protobuf requests): one case is one trace, from intake's
POST /cases through the router and both departments to the close, with the W3C context
in the records' Kafka headers. The audit's verify stays clean: trace headers are outside
the signatures.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from shared.contracts.topology import CASES_ACCEPTED, dept_tasks
from shared.messaging.kafka import read_to_end
from shared.platform.settings import Settings
from tests.conftest import Stack
from tests.e2e.harness import Pipeline, free_port, run_services, wait_closed
from tests.support import builders
from tests.support.builders import case_body, person
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

SERVICES = ["intake", "router", "hr_registration", "social_security", "audit", "deadlines"]
BENEFIT_FORM = dict(builders.BENEFIT_FORM)


@dataclass(frozen=True)
class Received:
    service: str
    name: str
    trace_id: str
    parent: str
    links: tuple[str, ...]  # trace ids of the linked contexts


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver: every span exported to it, with its service."""

    port: int
    spans: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        found = [
            Received(
                service,
                span.name,
                span.trace_id.hex(),
                span.parent_span_id.hex(),
                tuple(link.trace_id.hex() for link in span.links),
            )
            for resource in request.resource_spans
            for service in [_service_name(resource.resource.attributes)]
            for scope in resource.scope_spans
            for span in scope.spans
        ]
        with self.lock:
            self.spans += found

    def of_trace(self, trace_id: str) -> list[Received]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def linking(self, trace_id: str) -> list[Received]:
        with self.lock:
            return [s for s in self.spans if trace_id in s.links]


def _service_name(attributes: Any) -> str:
    return next((a.value.string_value for a in attributes if a.key == "service.name"), "?")


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    received = Collector(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            status = 200 if self.path == "/v1/traces" else 404
            if status == 200:
                received.add(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:  # quiet: no line per export
            pass

    server = ThreadingHTTPServer(("127.0.0.1", received.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield received
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def pipeline(
    stack: Stack,
    database_url: str,
    collector: Collector,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    with run_services(
        {name: ["-m", f"services.{name}"] for name in SERVICES},
        kafka=stack.kafka,
        database_url=database_url,
        logs=tmp_path_factory.mktemp("logs"),
        service_env={"audit": {"ONEDOOR_HTTP_PORT": str(free_port())}},
        extra_env={
            "ONEDOOR_OTEL_ENDPOINT": f"http://127.0.0.1:{collector.port}",
            "ONEDOOR_OTEL_SAMPLE_RATIO": "1",
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # the SDK's export interval (ms)
        },
        migrate_job=True,
    ) as pipeline:
        yield pipeline


def test_the_migrations_job_ran_once_and_the_services_waited_for_it(pipeline: Pipeline) -> None:
    job = (pipeline.logs / "migrate.log").read_text()
    for name in SERVICES:
        assert f"{name}: schema {name} " in job, job
    assert "migration(s) applied" in job
    assert f"onedoor-migrate: done, {len(SERVICES)} services" in job
    intake = (pipeline.logs / "intake.log").read_text()
    assert "waiting for onedoor-migrate" in intake
    assert "schema and topics ready (made by onedoor-migrate)" in intake
    assert "migrations applied" not in intake  # it never migrated itself
    # A second run (a re-run Job, the next release) finds nothing to do.
    again = subprocess.run(
        [sys.executable, "-m", "services.migrate", "--role-passwords", str(_secrets(pipeline))],
        env=pipeline.env | {"DATABASE_URL": _owner_dsn(pipeline)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("up to date") == len(SERVICES), again.stdout
    assert "created" not in again.stdout


async def headers_of(settings: Settings, topic: str, case_id: str) -> list[dict[str, str]]:
    """The headers of each record of ``case_id`` on ``topic``."""
    name = settings.topic(topic)
    parts = [TopicPartition(name, p) for p in range(settings.topic_partitions)]
    return [
        {k: v.decode() for k, v in r.headers}
        for r in await read_to_end(settings, parts)
        if r.key == case_id.encode()
    ]


def _secrets(pipeline: Pipeline) -> Any:
    from pathlib import Path  # noqa: PLC0415

    return Path(pipeline.env_of("router")["ONEDOOR_DATABASE_PASSWORD_FILE"]).parent


def _owner_dsn(pipeline: Pipeline) -> str:
    return pipeline.settings.database_url.get_secret_value()


async def test_one_case_is_one_trace_from_the_window_to_the_close(
    pipeline: Pipeline, collector: Collector
) -> None:
    async with httpx.AsyncClient(base_url=pipeline.base, timeout=30, headers=pipeline.auth) as c:
        resp = await c.post(
            "/cases", json=case_body("SS-UNEMPLOYMENT-BENEFIT", person(), BENEFIT_FORM)
        )
        assert resp.status_code == 201, resp.text
        case_id = resp.json()["case_id"]
        closed = await wait_closed(c, case_id)
    assert closed["outcome"] == "approved", closed

    # The trace id, as the window's record carries it in its Kafka headers.
    accepted = await headers_of(pipeline.settings, CASES_ACCEPTED, case_id)
    assert len(accepted) == 1
    assert "traceparent" in accepted[0], accepted
    version, trace_id, _span, flags = accepted[0]["traceparent"].split("-")
    assert version == "00"
    assert int(flags, 16) & 1, "sampled"
    # The router's task for HR carries the same trace, a span of the router's.
    tasks = await headers_of(pipeline.settings, dept_tasks("hr_registration"), case_id)
    assert [t["traceparent"].split("-")[1] for t in tasks] == [trace_id]
    assert tasks[0]["traceparent"] != accepted[0]["traceparent"]

    def whole_trace() -> dict[str, set[str]] | None:
        by_service: dict[str, set[str]] = {}
        for span in collector.of_trace(trace_id):
            by_service.setdefault(span.service, set()).add(span.name)
        # intake's request, the router (routing, step 2, the close), each department
        wanted = {"intake", "router", "hr_registration", "social_security"}
        return by_service if wanted <= by_service.keys() and len(by_service["router"]) else None

    by_service = await wait_for(whole_trace, 30, "spans of every service in the case's trace")
    assert "POST /cases" in by_service["intake"], by_service
    assert {"process CaseAccepted", "process StepApproved"} <= by_service["router"], by_service
    assert "process StepAssigned" in by_service["hr_registration"], by_service
    assert "process StepAssigned" in by_service["social_security"], by_service
    spans = collector.of_trace(trace_id)
    roots = [s for s in spans if not s.parent.strip("0")]
    assert [(s.service, s.name) for s in roots] == [("intake", "POST /cases")], spans
    # The router handled the acceptance, step 1's and step 2's outcomes: three record
    # spans in this trace (the last one closed the case).
    assert sum(1 for s in spans if s.service == "router") >= 3, spans

    # The batches that carried the case's records link to its trace: the relays' and the
    # consumers' (the audit's included: it emits nothing, so it only links).
    def linked() -> list[Received] | None:
        spans = collector.linking(trace_id)
        return spans if {s.service for s in spans} >= {"intake", "router", "audit"} else None

    linking = await wait_for(linked, 30, "batch spans linked to the case's trace")
    names = {s.name.split(" ")[0] for s in linking}
    assert {"consume", "publish"} <= names, linking


def test_verify_is_clean_with_trace_headers(pipeline: Pipeline) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.audit.cli", "verify", "--json"],
        env=pipeline.env_of("auditor"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["violations"] == 0, report["details"]
    assert report["cases"] >= 1
