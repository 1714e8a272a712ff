"""A short Prometheus scrape of each service (what the demo prints at its end).

Reads ``GET /metrics`` of every running service (the demo saves each whole exposition
under ``<data>/metrics/<service>.prom``) and picks a few key figures per service: cases
accepted (intake) and closed by outcome (router), records consumed, consumer lag,
outbox backlog and rows published.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

KEYS = {
    "onedoor_cases_accepted_total": "accepted",
    "onedoor_cases_closed_total": "closed",
    "onedoor_consumer_records_total": "consumed",
    "onedoor_consumer_lag_records": "lag",
    "onedoor_outbox_backlog_rows": "outbox",
    "onedoor_relay_published_total": "published",
}


@dataclass
class Figures:
    """One service's key figures (summed over their labels; closed kept by outcome)."""

    values: dict[str, float] = field(default_factory=dict)
    closed: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        """``accepted=.. closed=approved:..,rejected:.. consumed=.. lag=.. outbox=..
        published=..``: the figures this service has, in that order."""
        parts = []
        for key in KEYS.values():
            if key == "closed" and self.closed:
                by = ",".join(f"{k}:{int(v)}" for k, v in sorted(self.closed.items()))
                parts.append(f"closed={by}")
            elif key in self.values and key != "closed":
                parts.append(f"{key}={int(self.values[key])}")
        return " ".join(parts)


def figures(text: str) -> Figures:
    """The key figures of one exposition."""
    found = Figures()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = KEYS.get(sample.name)
            if key is None:
                continue
            found.values[key] = found.values.get(key, 0) + sample.value
            if key == "closed":
                outcome = sample.labels.get("outcome", "?")
                found.closed[outcome] = found.closed.get(outcome, 0) + sample.value
    return found


async def scrape_all(health: Mapping[str, str]) -> dict[str, str]:
    """The exposition of each service (``health``: service -> its /health URL; /metrics
    is beside it); a service that does not answer is left out."""
    found: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=5) as client:
        for name, url in health.items():
            try:
                resp = await client.get(f"{url.removesuffix('/health')}/metrics")
            except httpx.HTTPError:
                continue
            if resp.status_code == 200:
                found[name] = resp.text
    return found
