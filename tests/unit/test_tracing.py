"""Trace context in Kafka headers (shared.platform.tracing), with the SDK's in-memory
exporter: off costs nothing and adds no header; on, an event carries a span of its
handler, the child of the record's context; batches link to their sampled records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.platform import tracing
from shared.platform.settings import Settings

pytestmark = pytest.mark.unit

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SAMPLED = f"00-{TRACE}-00f067aa0ba902b7-01"
UNSAMPLED = f"00-{TRACE}-00f067aa0ba902b7-00"


@dataclass(frozen=True)
class Rec:
    headers: tuple[tuple[str, bytes], ...]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure(Settings(otel_sample_ratio=1.0), "router", exporter=exporter)
    yield exporter
    tracing.shutdown()


def test_off_without_an_endpoint_adds_nothing() -> None:
    assert tracing.configure(Settings(otel_endpoint=None), "router") is None
    assert not tracing.active()
    assert tracing.carry(((tracing.TRACEPARENT, SAMPLED.encode()),)) == ()
    assert tracing.carry() == ()
    tracing.consumed("router", [Rec(((tracing.TRACEPARENT, SAMPLED.encode()),))], 0.0, [])


def test_parse_refuses_what_is_not_a_traceparent() -> None:
    assert tracing.parse("01-" + SAMPLED[3:]) is None
    assert tracing.parse(f"00-{'0' * 32}-00f067aa0ba902b7-01") is None
    assert tracing.parse("00-xyz-00f067aa0ba902b7-01") is None
    ctx = tracing.parse(SAMPLED, "vendor=a")
    assert ctx is not None
    assert tracing.format_context(ctx) == (
        (tracing.TRACEPARENT, SAMPLED),
        (tracing.TRACESTATE, "vendor=a"),
    )


def test_an_event_carries_a_child_span_ended_with_its_batch(
    spans: InMemorySpanExporter,
) -> None:
    record = Rec(((tracing.TRACEPARENT, SAMPLED.encode()), ("event_type", b"CaseAccepted")))
    first = dict(tracing.carry(record.headers))
    again = dict(tracing.carry(record.headers))  # a second event of the same record
    assert first == again
    version, trace_id, span_id, flags = first[tracing.TRACEPARENT].split("-")
    assert (version, trace_id) == ("00", TRACE)
    assert span_id != "00f067aa0ba902b7"
    assert int(flags, 16) & 1
    other = Rec(((tracing.TRACEPARENT, f"00-{'1' * 32}-{'2' * 16}-00".encode()),))
    tracing.consumed("router", [record, other, Rec(())], 0.0, ["cases.accepted"])
    tracing.shutdown()
    done = {s.name: s for s in spans.get_finished_spans()}
    assert set(done) == {"process CaseAccepted", "consume router"}
    child = done["process CaseAccepted"]
    assert child.parent is not None
    assert child.parent.span_id == int("00f067aa0ba902b7", 16)
    assert f"{child.context.span_id:016x}" == span_id
    batch = done["consume router"]
    # Linked to the sampled record only; a batch span starts a trace of its own.
    assert [f"{link.context.trace_id:032x}" for link in batch.links] == [TRACE]
    assert batch.parent is None
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 3


def test_an_unsampled_context_passes_on_unchanged(spans: InMemorySpanExporter) -> None:
    record = Rec(((tracing.TRACEPARENT, UNSAMPLED.encode()),))
    assert tracing.carry(record.headers) == ((tracing.TRACEPARENT, UNSAMPLED),)
    tracing.consumed("router", [record], 0.0, [])
    tracing.shutdown()
    assert spans.get_finished_spans() == ()


def test_a_relay_round_links_its_sampled_rows(spans: InMemorySpanExporter) -> None:
    rows = [{"headers": [["event_type", "CaseAccepted"], [tracing.TRACEPARENT, SAMPLED]]}]
    tracing.published("intake", rows, 0.0)
    tracing.published("intake", [{"headers": []}], 0.0)  # nothing sampled: no span
    tracing.shutdown()
    (span,) = spans.get_finished_spans()
    assert span.name == "publish intake"
    assert [f"{link.context.trace_id:032x}" for link in span.links] == [TRACE]
