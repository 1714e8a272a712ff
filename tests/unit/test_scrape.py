"""The demo's short metrics scrape: key figures from a Prometheus exposition."""

from __future__ import annotations

import pytest

from deploy.scrape import figures

pytestmark = pytest.mark.unit

EXPOSITION = """\
# HELP onedoor_cases_closed_total Cases closed, by outcome.
# TYPE onedoor_cases_closed_total counter
onedoor_cases_closed_total{outcome="approved"} 128.0
onedoor_cases_closed_total{outcome="rejected"} 66.0
# HELP onedoor_consumer_records_total Records consumed.
# TYPE onedoor_consumer_records_total counter
onedoor_consumer_records_total{group="router",topic="cases.accepted"} 194.0
onedoor_consumer_records_total{group="router",topic="dept.hr_registration.outcomes"} 97.0
# HELP onedoor_outbox_backlog_rows Outbox rows.
# TYPE onedoor_outbox_backlog_rows gauge
onedoor_outbox_backlog_rows 3.0
# HELP onedoor_http_request_duration_seconds Latency.
# TYPE onedoor_http_request_duration_seconds histogram
onedoor_http_request_duration_seconds_count{method="GET",route="/",status="2xx"} 5.0
"""


def test_key_figures_of_an_exposition() -> None:
    found = figures(EXPOSITION)
    assert found.line() == "closed=approved:128,rejected:66 consumed=291 outbox=3"
