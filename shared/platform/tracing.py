"""OpenTelemetry traces: one case is one trace, from the window to its close.

W3C trace context (``traceparent``, ``tracestate``) travels in each record's Kafka headers.
Intake starts a trace for each request (or continues the caller's ``traceparent``); every
event a request or a consumed record causes carries the context of the span that caused
it, so the router's, the departments' and the closing spans share the window's trace id.

- Off unless ``ONEDOOR_OTEL_ENDPOINT`` (or the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``)
  names an OTLP/HTTP collector: then :data:`_ACTIVE` is None and every hook returns at
  once, with no SDK work per record or per batch.
- Sampled at the window (``ONEDOOR_OTEL_SAMPLE_RATIO``); downstream services follow the
  ``traceparent``'s sampled flag. An unsampled record's context is passed on unchanged,
  without SDK work.
- Spans per batch: each consumer batch and each relay round is one span, linked to the
  sampled records' contexts (at most :data:`MAX_LINKS`). A record whose handling emits
  events gets a span of its own, a child of the record's context, from its handling to
  its batch's commit: that span's context goes on what it emitted.
- Signatures: trace headers are outside what is signed (the record value bytes) and the
  audit stores and checks only the signature headers, so adding, dropping or changing a
  trace header never breaks a signature nor a verify.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from shared.platform.settings import Settings

# The SDK is imported only when tracing is turned on: a process with tracing off never
# loads it (start-up time, memory).
if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import Link, Span, SpanContext

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
MAX_LINKS = 128  # the SDK's default span link limit
_MAX_OPEN = 10_000  # record spans awaiting their batch's commit (a rolled-back batch's stay)

TraceHeaders = tuple[tuple[str, str], ...]


def _linked_or_ratio(ratio: float) -> Sampler:
    """A span linked to sampled records is recorded (a batch holding a sampled case);
    any other follows its parent, or ``ratio`` for a new trace."""
    from opentelemetry.sdk.trace.sampling import (  # noqa: PLC0415 - only when on
        ALWAYS_ON,
        ParentBased,
        Sampler,
        SamplingResult,
        TraceIdRatioBased,
    )

    class LinkedOrRatio(Sampler):
        def __init__(self) -> None:
            self._rest = ParentBased(TraceIdRatioBased(ratio))

        def should_sample(  # noqa: PLR0917 - the SDK's signature
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any = None,
            attributes: Any = None,
            links: Sequence[Link] | None = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            chosen: Sampler = ALWAYS_ON if links else self._rest
            return chosen.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return "LinkedOrRatio(ParentBased(TraceIdRatioBased))"

    return LinkedOrRatio()


class Tracing:
    """One service's tracer and the record spans waiting for their batch's commit."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("onedoor")
        self.open: dict[str, Span] = {}


_ACTIVE: Tracing | None = None


def configure(
    settings: Settings, service: str, exporter: SpanExporter | None = None
) -> Tracing | None:
    """Turn tracing on for this process when ``settings.otel_endpoint`` (or ``exporter``,
    for tests) says where spans go; off otherwise. Returns the tracing in force."""
    global _ACTIVE  # noqa: PLW0603 - one tracer per process, as the SDK's own global
    shutdown()
    if exporter is None and not settings.otel_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    if exporter is None:
        assert settings.otel_endpoint is not None
        url = settings.otel_endpoint.rstrip("/")
        exporter = OTLPSpanExporter(url if url.endswith("/v1/traces") else f"{url}/v1/traces")
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.namespace": "onedoor"}),
        sampler=_linked_or_ratio(settings.otel_sample_ratio),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _ACTIVE = Tracing(provider)
    return _ACTIVE


def shutdown() -> None:
    """Export what is pending and turn tracing off (at a service's stop)."""
    global _ACTIVE
    active, _ACTIVE = _ACTIVE, None
    if active is not None:
        for span in active.open.values():
            span.end()
        active.provider.shutdown()


def active() -> bool:
    return _ACTIVE is not None


def parse(traceparent: str, tracestate: str | None = None) -> SpanContext | None:
    """The remote span context of a W3C ``traceparent`` (version 00), or None."""
    from opentelemetry.trace import SpanContext, TraceFlags  # noqa: PLC0415
    from opentelemetry.trace.span import TraceState  # noqa: PLC0415

    parts = traceparent.split("-")
    if len(parts) != 4 or parts[0] != "00" or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    state = TraceState.from_header([tracestate]) if tracestate else None
    return SpanContext(trace_id, span_id, True, TraceFlags(flags & 1), state)


def format_context(ctx: SpanContext) -> TraceHeaders:
    """``traceparent`` (and ``tracestate`` when it has entries) of ``ctx``."""
    parent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    state = ctx.trace_state.to_header() if ctx.trace_state else ""
    return ((TRACEPARENT, parent), (TRACESTATE, state)) if state else ((TRACEPARENT, parent),)


def _header(headers: Iterable[Sequence[Any]], name: str) -> str | None:
    for item in headers:
        if item[0] == name:
            value = item[1]
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


def carry(cause: Sequence[tuple[str, bytes]] | None = None) -> TraceHeaders:
    """The trace headers for an event about to be written: ``()`` when tracing is off.

    ``cause``: the headers of the record whose handling emits the event (a consumer);
    the event then carries a span of this service, child of that record's context
    (ended at :func:`consumed`), or the record's own headers when it is not sampled.
    None: the current span (an HTTP request's, see :func:`server_span`)."""
    tracing = _ACTIVE
    if tracing is None:
        return ()
    from opentelemetry import trace  # noqa: PLC0415 - loaded already: tracing is on
    from opentelemetry.trace import NonRecordingSpan, SpanKind  # noqa: PLC0415

    if cause is None:
        ctx = trace.get_current_span().get_span_context()
        return format_context(ctx) if ctx.is_valid else ()
    parent = _header(cause, TRACEPARENT)
    if parent is None:
        return ()
    remote = parse(parent, _header(cause, TRACESTATE))
    if remote is None:
        return ()
    if not remote.trace_flags.sampled:
        return format_context(remote)
    span = tracing.open.get(parent)
    if span is None:
        if len(tracing.open) >= _MAX_OPEN:
            for stale in tracing.open.values():
                stale.end()
            tracing.open.clear()
        event_type = _header(cause, "event_type")
        span = tracing.tracer.start_span(
            f"process {event_type}" if event_type else "process",
            context=trace.set_span_in_context(NonRecordingSpan(remote)),
            kind=SpanKind.CONSUMER,
        )
        tracing.open[parent] = span
    return format_context(span.get_span_context())


def _links(headers_of: Iterable[Iterable[Sequence[Any]]]) -> tuple[list[Link], list[str]]:
    from opentelemetry.trace import Link  # noqa: PLC0415

    links: list[Link] = []
    parents: list[str] = []
    for headers in headers_of:
        parent = _header(headers, TRACEPARENT)
        if parent is None:
            continue
        parents.append(parent)
        ctx = parse(parent)
        if ctx is not None and ctx.trace_flags.sampled and len(links) < MAX_LINKS:
            links.append(Link(ctx))
    return links, parents


def consumed(loop: str, records: Sequence[Any], began_s: float, topics: Iterable[str]) -> None:
    """After a batch's commit (``records`` with ``headers``; ``began_s``: its
    ``time.perf_counter()`` start): one span for the batch, linked to its sampled
    records; the record spans its handlers opened (:func:`carry`) end now."""
    tracing = _ACTIVE
    if tracing is None:
        return
    from opentelemetry import context as otel_context  # noqa: PLC0415
    from opentelemetry.trace import SpanKind  # noqa: PLC0415

    links, parents = _links(r.headers for r in records)
    now = time.time_ns()
    for parent in parents:
        span = tracing.open.pop(parent, None)
        if span is not None:
            span.set_attribute("onedoor.consumer", loop)
            span.end(now)
    if not links:
        return
    began = now - int((time.perf_counter() - began_s) * 1e9)
    span = tracing.tracer.start_span(
        f"consume {loop}",
        context=otel_context.Context(),
        kind=SpanKind.CONSUMER,
        links=links,
        start_time=began,
        attributes={
            "messaging.system": "kafka",
            "messaging.batch.message_count": len(records),
            "messaging.destination.name": sorted(set(topics)),
        },
    )
    span.end(now)


def published(relay: str, rows: Sequence[Any], began_s: float) -> None:
    """After a relay round: one span linked to the sampled rows it published (``rows``:
    the outbox rows, ``headers`` as ``[name, value]`` pairs)."""
    tracing = _ACTIVE
    if tracing is None:
        return
    from opentelemetry import context as otel_context  # noqa: PLC0415
    from opentelemetry.trace import SpanKind  # noqa: PLC0415

    links, _ = _links(r["headers"] for r in rows)
    if not links:
        return
    now = time.time_ns()
    span = tracing.tracer.start_span(
        f"publish {relay}",
        context=otel_context.Context(),
        kind=SpanKind.PRODUCER,
        links=links,
        start_time=now - int((time.perf_counter() - began_s) * 1e9),
        attributes={"messaging.system": "kafka", "messaging.batch.message_count": len(rows)},
    )
    span.end(now)


@contextlib.contextmanager
def server_span(scope: MutableMapping[str, Any]) -> Iterator[Span | None]:
    """Around one HTTP request (an ASGI ``scope``): a server span, the child of the
    caller's ``traceparent`` when it sent one, current while the app runs (what the
    request writes to the outbox carries it). None when tracing is off."""
    tracing = _ACTIVE
    if tracing is None or str(scope.get("path", "")).startswith("/health"):
        yield None  # no trace of a probe
        return
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.trace import NonRecordingSpan, SpanKind  # noqa: PLC0415

    headers = [(k.decode("latin-1"), v) for k, v in scope.get("headers", ())]
    parent = _header(headers, TRACEPARENT)
    remote = parse(parent, _header(headers, TRACESTATE)) if parent else None
    parent_ctx = trace.set_span_in_context(NonRecordingSpan(remote)) if remote else None
    with tracing.tracer.start_as_current_span(
        scope.get("method", "HTTP"), context=parent_ctx, kind=SpanKind.SERVER
    ) as span:
        yield span


def name_server_span(span: Span | None, method: str, route: str, status: int) -> None:
    """Name a request's span by its route template (never its path: a path may hold an
    id) and record its status."""
    if span is not None and span.is_recording():
        span.update_name(f"{method} {route}")
        span.set_attribute("http.request.method", method)
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
