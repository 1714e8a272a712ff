"""What the dashboard and the community page share: the audit's figures fetched with the
signed-in person's own token, each chart's table in the page's language (for the
chart, for the table beside it) and as CSV (machine words, ISO dates).

The figures are the audit's (its projection holds every case, with its community and
its promise); intake only asks for them, as the person who is signed in: the audit
decides what that role may see (a clerk or a centre head, its own centre).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import structlog
from markupsafe import Markup

from services.intake.citizen import DEPARTMENT_LABELS
from services.intake.pages import i18n
from shared.platform.settings import Settings

log = structlog.get_logger("intake.pages")
# The chart tables' first column (CSV header and table heading), per chart.
LABEL_COLUMN = {
    "per_day_department": "day",
    "on_spot": "closure",
    "close_time": "accept_to_close",
    "due": "promise",
    "per_community": "community_code",
    "per_item": "item_code",
    "per_day": "day",
}
_DAY_CHARTS = ("per_day_department", "per_day")
_KEYED = ("on_spot", "close_time", "due")  # labels are words of ours, translated


@dataclass(frozen=True, slots=True)
class Answer:
    """The audit's answer: its JSON, or why there is none (for the page to say)."""

    body: dict[str, Any] | None
    problem: str | None  # i18n key ("audit_off", "audit_down")
    detail: str = ""


async def audit_get(settings: Settings, path: str, token: str) -> Answer:
    """GET ``path`` on the audit's API with ``token``."""
    if not settings.audit_url:
        return Answer(None, "audit_off")
    try:
        async with httpx.AsyncClient(base_url=settings.audit_url, timeout=15) as http:
            answer = await http.get(path, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        log.warning("audit not answering", error=type(exc).__name__)
        return Answer(None, "audit_down", type(exc).__name__)
    if answer.status_code != 200:
        return Answer(None, "audit_down", f"HTTP {answer.status_code}")
    body: dict[str, Any] = answer.json()
    return Answer(body, None)


def series_label(key: str, lang: str) -> str:
    """A series' name: a status, a department, or a measure."""
    if key in DEPARTMENT_LABELS:
        zh, _, en = DEPARTMENT_LABELS[key].partition(" / ")
        return en if lang == "en" else zh
    if key == "-":
        return i18n.text("lb_no_department", lang)
    return i18n.text(f"lb_{key}", lang)


def row_label(name: str, key: str, lang: str) -> str:
    if name in _DAY_CHARTS:
        return i18n.local_date(key, lang)
    if name in _KEYED:
        return i18n.text(f"lb_{key}", lang)
    return key


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart as the page shows it: its table (labels down, series across), and the
    JSON the static script hands Chart.js (the same numbers)."""

    name: str
    kind: str
    keys: list[str]
    labels: list[str]
    series: list[tuple[str, str, list[int]]]  # key, label, values

    @classmethod
    def of(cls, name: str, table: dict[str, Any], lang: str) -> Chart:
        keys = [str(k) for k in table["labels"]]
        return cls(
            name=name,
            kind=str(table["kind"]),
            keys=keys,
            labels=[row_label(name, k, lang) for k in keys],
            series=[
                (str(s["key"]), series_label(str(s["key"]), lang), [int(v) for v in s["values"]])
                for s in table["series"]
            ],
        )

    def rows(self) -> list[tuple[str, list[int], int]]:
        """Each label, its counts, and their total."""
        return [
            (label, counts := [values[i] for _, _, values in self.series], sum(counts))
            for i, label in enumerate(self.labels)
        ]

    def totals(self) -> list[int]:
        return [sum(values) for _, _, values in self.series]

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "labels": self.labels,
            "datasets": [{"key": k, "label": lab, "data": v} for k, lab, v in self.series],
        }

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([LABEL_COLUMN.get(self.name, "label"), *(k for k, _, _ in self.series)])
        for i, key in enumerate(self.keys):
            writer.writerow([key, *(values[i] for _, _, values in self.series)])
        return out.getvalue()


def charts(body: dict[str, Any], lang: str) -> list[Chart]:
    return [Chart.of(name, table, lang) for name, table in body.get("charts", {}).items()]


def specs(made: list[Chart]) -> dict[str, Markup]:
    """Each chart's JSON for a ``<script type="application/json">`` block: the block's
    text is not HTML-unescaped by the browser, so it is JSON with ``<``, ``>`` and ``&``
    written as escapes (no ``</script>`` can end it early), marked safe as it is."""
    return {
        chart.name: Markup(  # noqa: S704 - escaped right here, for a script block
            json.dumps(chart.spec(), ensure_ascii=False)
            .replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
        )
        for chart in made
    }


class ChartLibrary:
    """Chart.js, read once from ``settings.chartjs_file`` (Debian's libjs-chart.js)."""

    def __init__(self, path: Path, read: Callable[[Path], bytes] = Path.read_bytes) -> None:
        self.path = path
        try:
            self.body: bytes | None = read(path)
        except OSError as exc:
            self.body = None
            log.warning(
                "chart library missing: the dashboard shows its figures as tables only; "
                "install Debian's libjs-chart.js or set ONEDOOR_CHARTJS_FILE",
                path=str(path),
                error=type(exc).__name__,
            )
