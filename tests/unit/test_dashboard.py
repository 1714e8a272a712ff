"""The dashboard's figures without a database or a browser: the audit's chart tables
from case rows, the verify run's outcome, and intake's side (labels in each language,
the CSV, the JSON block a script reads, the role a centre head gets)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.audit import dashboard, verifications
from services.audit.dashboard import CaseRow
from services.intake import accounts
from services.intake.pages import figures

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)  # 12:00 in Beijing


def row(
    n: int,
    *,
    accepted: datetime,
    closed: datetime | None = None,
    outcome: str | None = None,
    on_spot: bool = False,
    promised: datetime | None = None,
    waiting: bool = False,
    departments: tuple[str, ...] = ("hr_registration",),
    community: str = "110105001001",
    item: str = "HR-JOB-REGISTRATION",
) -> CaseRow:
    return CaseRow(
        case_id=f"00000000-0000-0000-0000-{n:012d}",
        receipt_no=f"C01-20261206-{n:06d}",
        item_code=item,
        community_code=community,
        centre_id="C01",
        accepted_at=accepted,
        closed_at=closed,
        outcome=outcome,
        on_spot=on_spot,
        promised_by=promised,
        waiting=waiting,
        departments=departments,
    )


ROWS = [
    # Accepted at 23:30 UTC on the 5th: the 6th in Beijing.
    row(
        1,
        accepted=datetime(2026, 12, 5, 23, 30, tzinfo=UTC),
        closed=datetime(2026, 12, 5, 23, 30, 20, tzinfo=UTC),
        outcome="approved",
        on_spot=True,
    ),
    row(
        2,
        accepted=datetime(2026, 12, 5, 10, 0, tzinfo=UTC),
        closed=datetime(2026, 12, 5, 12, 0, tzinfo=UTC),
        outcome="rejected",
        departments=("hr_registration", "social_security"),
        item="SS-UNEMPLOYMENT-BENEFIT",
    ),
    row(3, accepted=NOW - timedelta(days=12), promised=NOW - timedelta(hours=1)),  # past
    row(4, accepted=NOW - timedelta(days=9), promised=NOW + timedelta(hours=20)),  # near
    row(5, accepted=NOW, promised=NOW + timedelta(days=10), community="110105001002"),
    row(6, accepted=NOW, promised=NOW - timedelta(days=1), waiting=True),  # never late
    row(7, accepted=NOW, departments=()),  # not routed yet
]


def table(chart: dict[str, object]) -> dict[str, dict[str, int]]:
    labels = chart["labels"]
    assert isinstance(labels, list)
    series = chart["series"]
    assert isinstance(series, list)
    return {s["key"]: dict(zip(labels, s["values"], strict=True)) for s in series}


def test_the_dashboards_charts_count_exactly() -> None:
    body = dashboard.dashboard(ROWS, NOW)
    charts = body["charts"]
    assert body["cases"] == 7
    assert body["on_spot_share"] == 0.5  # one of two closed cases
    assert table(charts["on_spot"]) == {"cases": {"on_spot": 1, "closed_later": 1, "open": 5}}
    by_dept = table(charts["per_day_department"])
    assert by_dept["hr_registration"]["2026-12-06"] == 3  # 1 (Beijing's 6th), 5, 6
    assert by_dept["hr_registration"]["2026-12-05"] == 1
    assert by_dept["social_security"] == {
        "2026-11-24": 0,
        "2026-11-27": 0,
        "2026-12-05": 1,
        "2026-12-06": 0,
    }
    assert by_dept["-"]["2026-12-06"] == 1
    times = table(charts["close_time"])["cases"]
    assert times["lt_1m"] == 1
    assert times["1h_1d"] == 1
    assert sum(times.values()) == 2
    assert table(charts["due"])["cases"] == {
        "past": 1,
        "near": 1,
        "later": 1,
        "waiting_info": 1,
        "no_date": 1,
    }
    community = table(charts["per_community"])
    assert community["open"] == {"110105001001": 3, "110105001002": 1}
    assert community["approved"]["110105001001"] == 1
    assert [c["receipt_no"] for c in body["late"]] == ["C01-20261206-000003", "C01-20261206-000004"]


def test_one_communitys_page() -> None:
    mine = [r for r in ROWS if r.community_code == "110105001001"]
    body = dashboard.community(mine, "110105001001", NOW)
    per_item = table(body["charts"]["per_item"])
    assert per_item["rejected"] == {"HR-JOB-REGISTRATION": 0, "SS-UNEMPLOYMENT-BENEFIT": 1}
    assert per_item["open"]["HR-JOB-REGISTRATION"] == 3
    assert per_item["waiting_info"]["HR-JOB-REGISTRATION"] == 1
    assert body["cases"] == 6
    assert dashboard.communities(ROWS)[1] == {
        "community_code": "110105001002",
        "open": 1,
        "waiting_info": 0,
        "approved": 0,
        "rejected": 0,
    }


def test_a_verify_runs_outcome() -> None:
    report = {"violations": 0, "details": [{"kind": "x"}] * 900}
    kept, problem = verifications.outcome(0, json.dumps(report).encode(), b"")
    assert problem is None
    assert kept is not None
    assert len(kept["details"]) == verifications.KEPT_DETAILS
    none, why = verifications.outcome(2, b"", b"progress\ncannot reach the stack: OSError\n")
    assert none is None
    assert why == "cannot reach the stack: OSError"
    assert verifications.outcome(1, b"not json", b"")[1] == "verify printed no JSON report (exit 1)"


def test_charts_on_the_page_in_each_language_and_as_csv() -> None:
    body = dashboard.dashboard(ROWS, NOW)
    zh = {c.name: c for c in figures.charts(body, "zh")}
    en = {c.name: c for c in figures.charts(body, "en")}
    assert zh["per_day_department"].labels[-1] == "2026年12月6日"
    assert en["per_day_department"].labels[-1] == "2026-12-06"
    assert zh["on_spot"].labels == ["当场办结", "其他已办结", "未办结"]
    assert [lab for _, lab, _ in en["per_day_department"].series] == [
        "no department",
        "HR registration",
        "social security",
    ]
    rows = list(csv.reader(io.StringIO(zh["due"].csv())))
    assert rows[0] == ["promise", "cases"]  # machine words, whatever the page's language
    assert rows[1:] == [[k, "1"] for k in ("past", "near", "later", "waiting_info", "no_date")]
    day_rows = list(csv.reader(io.StringIO(zh["per_day_department"].csv())))
    assert day_rows[0] == ["day", "-", "hr_registration", "social_security"]
    assert day_rows[-1] == ["2026-12-06", "1", "3", "0"]
    assert zh["per_day_department"].rows()[-1] == ("2026年12月6日", [1, 3, 0], 4)


def test_a_charts_json_block_cannot_end_its_script() -> None:
    chart = figures.Chart(
        name="per_community",
        kind="bar",
        keys=["</script><script>alert(1)</script>&"],
        labels=["</script><script>alert(1)</script>&"],
        series=[("open", "open", [3])],
    )
    text = str(figures.specs([chart])["per_community"])
    assert "<" not in text
    assert ">" not in text
    assert "&" not in text
    assert json.loads(text)["labels"] == ["</script><script>alert(1)</script>&"]


def test_a_missing_chart_library_leaves_tables(tmp_path: Path) -> None:
    assert figures.ChartLibrary(tmp_path / "absent.js").body is None
    present = tmp_path / "chart.min.js"
    present.write_bytes(b"/* Chart.js */")
    assert figures.ChartLibrary(present).body == b"/* Chart.js */"


def test_a_centre_head_has_a_centre_and_no_window() -> None:
    accounts.check_binding("head", "C01", None, None)
    for centre, window in ((None, None), ("C01", "W01")):
        with pytest.raises(accounts.AccountError, match=r"centre head|only a clerk"):
            accounts.check_binding("head", centre, window, None)
