"""Prometheus metrics of a service (``prometheus-client``), served as ``GET /metrics``.

Each part of a service owns its instruments, made here so every name is in one place:
a consumer loop its :class:`ConsumerMetrics`, intake's acceptor :func:`cases_accepted`,
the HTTP front :func:`http_latency`. They are made unregistered; a running service
gathers them in its own registry (:class:`ServiceMetrics`), so several services in one
test process keep their figures apart. Figures move once per batch, per relay round or
per request, never per record: the engine adds up a batch in plain Python first.

What is read at scrape time (lag, outbox backlog and age, relay counters) is read then,
by :meth:`ServiceMetrics.refresh` (async) and the collector, not kept up to date.

Labels are topics, groups, reasons, routes, methods, status classes and outcomes only:
no personal data and no case id ever reaches a label, so ``/metrics`` is served without
a token (for a scraper on the internal network; see README "Metrics").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import TopicPartition
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "CASES_CLOSED",
    "CONTENT_TYPE",
    "ROUTE_KEY",
    "ConsumerMetrics",
    "Lag",
    "OutboxState",
    "ServiceMetrics",
    "cases_accepted",
    "http_latency",
    "status_class",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

ROUTE_KEY = "onedoor.route"
"""An ASGI scope key: the route template of a request answered before any router (the
lean POST /cases front sets it); else Starlette's matched route names it."""
CASES_CLOSED = "cases_closed"
"""A tally a handler counts with ``Tx.tally(CASES_CLOSED, outcome)`` (the router)."""
TALLIES: Mapping[str, tuple[str, str, str]] = {
    CASES_CLOSED: (
        "onedoor_cases_closed",
        "Cases closed, by outcome; counted once the transaction that emitted the close committed.",
        "outcome",
    ),
}


@dataclass(frozen=True, slots=True)
class Lag:
    """A consumer's lag: ``records`` waiting over its ``partitions``; None (unknown)
    while ``unknown`` of them (or the assignment itself) cannot be read."""

    records: int | None
    partitions: int = 0
    unknown: int = 0


@dataclass(frozen=True, slots=True)
class OutboxState:
    """The outbox as the relay sees it: unsent rows, the oldest one's age, dead letters."""

    backlog: int
    oldest_age_s: float
    dead_letters: int


class RelayCounters(Protocol):
    """What the collector reads from the outbox relay at scrape time."""

    published: int
    retries: int
    dead_letter_reasons: dict[str, int]


def cases_accepted() -> Counter:
    """Intake: cases accepted, counted after the group commit that stored them."""
    return Counter(
        "onedoor_cases_accepted",
        "Cases accepted (stored with their CaseAccepted), counted after the commit.",
        registry=None,
    )


def http_latency() -> Histogram:
    """Time to answer an HTTP request, by method, route template and status class."""
    return Histogram(
        "onedoor_http_request_duration_seconds",
        "Time to answer an HTTP request, by method, route template (never the path "
        "itself: 'unmatched' when no route matched) and status class (2xx, 4xx, ...).",
        ["method", "route", "status"],
        buckets=HTTP_BUCKETS,
        registry=None,
    )


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class ConsumerMetrics:
    """A consumer loop's instruments, updated once per committed batch."""

    def __init__(self, group: str, topic_prefix: str) -> None:
        """``group`` and the topics are labelled without ``topic_prefix``: the same
        dashboards serve every deployment."""
        self.group = group.removeprefix(topic_prefix)
        self._prefix = topic_prefix
        self.records = Counter(
            "onedoor_consumer_records",
            "Records consumed in committed batches, by group and topic.",
            ["group", "topic"],
            registry=None,
        )
        self.dead_lettered = Counter(
            "onedoor_consumer_dead_lettered",
            "Records the consumer sent to <topic>.dlq, by group, topic and reason.",
            ["group", "topic", "reason"],
            registry=None,
        )
        self.batch_seconds = Histogram(
            "onedoor_consumer_batch_duration_seconds",
            "Time to process and commit one batch (transaction and offset commit).",
            ["group"],
            buckets=BATCH_BUCKETS,
            registry=None,
        )
        self.rolled_back = Counter(
            "onedoor_consumer_batches_rolled_back",
            "Batches rolled back and retried (database or broker away, or a bug).",
            ["group"],
            registry=None,
        )
        self.lag = Gauge(
            "onedoor_consumer_lag_records",
            "Records on the broker the group's member has not taken yet, over every "
            "partition it holds; NaN while unknown.",
            ["group"],
            registry=None,
        )
        self.partitions = Gauge(
            "onedoor_consumer_partitions",
            "Partitions assigned to this member.",
            ["group"],
            registry=None,
        )
        self.lag_unknown = Gauge(
            "onedoor_consumer_partitions_lag_unknown",
            "Assigned partitions whose lag could not be read by the deadline.",
            ["group"],
            registry=None,
        )
        self._tallies: dict[str, Counter] = {}
        self._batch = self.batch_seconds.labels(self.group)
        self._rolled_back = self.rolled_back.labels(self.group)
        self.set_lag(Lag(None))

    def batch(
        self,
        seconds: float,
        fetched: Mapping[TopicPartition, Sequence[Any]],
        dead: Mapping[tuple[str, str], int],
        tallies: Mapping[tuple[str, str], int],
        blocked: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        """A committed batch: its duration, its records by partition, its dead letters
        by (deployed topic, reason), the handlers' tallies by (name, label). Records of
        a partition held back from ``blocked``'s offset are read again: counted then."""
        self._batch.observe(seconds)
        topics: dict[str, int] = {}
        for tp, records in fetched.items():
            n = len(records)
            if blocked and tp in blocked:
                n = sum(1 for r in records if r.offset < blocked[tp])
            topics[tp.topic] = topics.get(tp.topic, 0) + n
        for topic, n in topics.items():
            self.records.labels(self.group, self._topic(topic)).inc(n)
        for (topic, reason), n in dead.items():
            self.dead_lettered.labels(self.group, self._topic(topic), reason).inc(n)
        for (name, label), n in tallies.items():
            self._tally(name).labels(label).inc(n)

    def batch_rolled_back(self) -> None:
        self._rolled_back.inc()

    def set_lag(self, lag: Lag) -> None:
        self.lag.labels(self.group).set(math.nan if lag.records is None else lag.records)
        self.partitions.labels(self.group).set(lag.partitions)
        self.lag_unknown.labels(self.group).set(lag.unknown)

    def _topic(self, deployed: str) -> str:
        return deployed.removeprefix(self._prefix)

    def _tally(self, name: str) -> Counter:
        counter = self._tallies.get(name)
        if counter is None:
            metric, doc, label = TALLIES[name]
            counter = self._tallies[name] = Counter(metric, doc, [label], registry=None)
        return counter

    def instruments(self) -> list[Collector]:
        fixed: list[Collector] = [
            self.records,
            self.dead_lettered,
            self.batch_seconds,
            self.rolled_back,
            self.lag,
            self.partitions,
            self.lag_unknown,
        ]
        return fixed + list(self._tallies.values())


class ServiceMetrics(Collector):
    """One service's registry: its consumer loops' instruments, the relay's counters,
    the outbox gauges, and whatever the service adds (:meth:`register`)."""

    def __init__(self, consumers: Iterable[ConsumerMetrics], relay: RelayCounters) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
        self.registry = CollectorRegistry(auto_describe=False)
        self._consumers = tuple(consumers)
        self._relay = relay
        self.outbox_backlog = Gauge(
            "onedoor_outbox_backlog_rows",
            "Outbox rows not published yet; NaN while the database is unreachable.",
            registry=None,
        )
        self.outbox_age = Gauge(
            "onedoor_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row (0 when the outbox is empty).",
            registry=None,
        )
        self.outbox_dead = Gauge(
            "onedoor_outbox_dead_letters",
            "Rows in outbox_dead_letters: records no broker would take (an alert figure).",
            registry=None,
        )
        self.set_outbox(None)
        self.registry.register(self)  # collect() reads the parts when scraped

    def register(self, *collectors: Collector) -> None:
        """Add a service's own instruments (intake's accepted cases, the HTTP timings)."""
        for collector in collectors:
            self.registry.register(collector)

    def set_outbox(self, state: OutboxState | None) -> None:
        if state is None:
            for gauge in (self.outbox_backlog, self.outbox_age, self.outbox_dead):
                gauge.set(math.nan)
            return
        self.outbox_backlog.set(state.backlog)
        self.outbox_age.set(state.oldest_age_s)
        self.outbox_dead.set(state.dead_letters)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        relay = self._relay
        yield _counter("onedoor_relay_published", "Outbox rows published.", relay.published)
        yield _counter(
            "onedoor_relay_retries",
            "Relay rounds that failed (Kafka or PostgreSQL away) and were retried.",
            relay.retries,
        )
        dead = CounterMetricFamily(
            "onedoor_relay_dead_lettered",
            "Outbox rows the broker refused for good, moved aside, by reason.",
            labels=["reason"],
        )
        for reason, n in sorted(relay.dead_letter_reasons.items()):
            dead.add_metric([reason], n)
        yield dead
        yield from self.outbox_backlog.collect()
        yield from self.outbox_age.collect()
        yield from self.outbox_dead.collect()
        yield from _merged(c for m in self._consumers for c in m.instruments())


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _merged(collectors: Iterable[Collector]) -> Iterator[Metric]:
    """The families of several loops' instruments, one family per name (one exposition
    may not name a family twice)."""
    families: dict[str, Metric] = {}
    for collector in collectors:
        for family in collector.collect():
            known = families.get(family.name)
            if known is None:
                families[family.name] = family
            else:
                known.samples.extend(family.samples)
    yield from families.values()
