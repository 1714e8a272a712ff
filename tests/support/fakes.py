"""In-memory fakes of this repository's service tables, for the unit tier.

Each answers the statements of one schema's SQL (services/router/store.py,
services/intake/store.py, the department SDK's subject cache) for a
:class:`shared.messaging.testing.MemoryStore`, so the services' real handlers run
through the real consumer engine without PostgreSQL. They match statements by their
opening words and read column lists from the statement itself; a statement they do not
know fails the test with its text (extend the fake with the store).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from shared.messaging.testing import Row

_INSERT_COLUMNS = re.compile(r"^INSERT INTO \w+ \(([^)]*)\)")
_SELECT_COLUMNS = re.compile(r"^SELECT (.*?) FROM ")
_UNNEST_ALIAS = re.compile(r"FROM unnest\([^)]*\) AS u\(([^)]*)\)")
_SET_FROM_UNNEST = re.compile(r"(\w+) = u\.(\w+)")


def _names(listed: str) -> list[str]:
    return [n.strip() for n in listed.split(",")]


def _unnest_rows(sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
    """The rows of ``unnest($1, $2, ...) AS u(a, b, ...)``, by alias."""
    match = _UNNEST_ALIAS.search(sql)
    assert match is not None, sql
    aliases = _names(match.group(1))
    return [dict(zip(aliases, values, strict=True)) for values in zip(*args, strict=True)]


def _update_from_unnest(table: dict[Any, Row], key: str, sql: str, args: Sequence[Any]) -> None:
    """``UPDATE t SET col = u.x, ... FROM unnest(...) AS u(...) WHERE t.key = u.key``."""
    assignments = _SET_FROM_UNNEST.findall(sql.split(" FROM unnest(", maxsplit=1)[0])
    for values in _unnest_rows(sql, args):
        row = table.get(values[key])
        if row is not None:
            row.update({column: values[alias] for column, alias in assignments})


class UniqueViolationError(AssertionError):
    """What PostgreSQL's primary key would refuse."""


@dataclass
class RouterData:
    cases: dict[UUID, Row] = field(default_factory=dict)
    rejected_cases: dict[UUID, str] = field(default_factory=dict)


class RouterTables:
    """The router's ``cases`` and ``rejected_cases`` (services/router/store.py)."""

    name = "router"

    def empty(self) -> RouterData:
        return RouterData()

    def answer(self, data: RouterData, sql: str, args: Sequence[Any]) -> list[Row] | None:
        if sql.startswith("SELECT c.* FROM unnest($1::uuid[]) AS u(id) JOIN cases c"):
            return [dict(data.cases[i]) for i in sorted(set(args[0])) if i in data.cases]
        if sql.startswith("SELECT r.case_id FROM unnest($1::uuid[]) AS u(id) JOIN rejected_cases"):
            return [{"case_id": i} for i in sorted(set(args[0])) if i in data.rejected_cases]
        if sql.startswith("INSERT INTO cases ("):
            match = _INSERT_COLUMNS.match(sql)
            assert match is not None
            for values in zip(*args, strict=True):
                row = dict(zip(_names(match.group(1)), values, strict=True))
                row["steps"] = json.loads(row["steps"])  # steps::jsonb
                if row["case_id"] in data.cases:
                    raise UniqueViolationError(f"cases: {row['case_id']} exists")
                data.cases[row["case_id"]] = row
            return []
        if sql.startswith("INSERT INTO rejected_cases (case_id, reason_code) VALUES"):
            case_id, reason = args
            if case_id in data.rejected_cases:
                raise UniqueViolationError(f"rejected_cases: {case_id} exists")
            data.rejected_cases[case_id] = reason
            return []
        if sql.startswith("UPDATE cases SET"):
            _update_from_unnest(data.cases, "case_id", sql, args)
            return []
        return None


class IntakeTables:
    """Intake's ``cases`` as its status views read and write them (services/intake/store.py).

    Intake's acceptor inserts the rows over HTTP; tests put them in with :meth:`add`.
    """

    name = "intake"

    def empty(self) -> dict[UUID, Row]:
        return {}

    @staticmethod
    def add(data: dict[UUID, Row], case_id: UUID, **columns: Any) -> Row:
        """A case as intake accepted it (status ``accepted``)."""
        row: Row = {
            "case_id": case_id,
            "status": "accepted",
            "current_step": None,
            "department": None,
            "outcome": None,
            "on_spot": False,
            "reason_code": None,
            "message": None,
            "review_flag": None,
            "routed_at": None,
            "closed_at": None,
            **columns,
        }
        data[case_id] = row
        return row

    def answer(self, data: dict[UUID, Row], sql: str, args: Sequence[Any]) -> list[Row] | None:
        if sql.startswith("SELECT c.case_id,") and "JOIN cases c ON c.case_id = u.id" in sql:
            match = _SELECT_COLUMNS.match(sql)
            assert match is not None
            columns = [c.removeprefix("c.") for c in _names(match.group(1))]
            return [{c: data[i][c] for c in columns} for i in sorted(set(args[0])) if i in data]
        if sql.startswith("UPDATE cases SET"):
            _update_from_unnest(data, "case_id", sql, args)
            return []
        return None


class SubjectTables:
    """A department's ``subjects`` (the SDK's SubjectCache, shared/department/adapter.py)."""

    name = "subjects"

    def empty(self) -> dict[tuple[str, str], Any]:
        return {}

    def answer(
        self, data: dict[tuple[str, str], Any], sql: str, args: Sequence[Any]
    ) -> list[Row] | None:
        if sql.startswith("SELECT s.kind, s.subject_id, s.state FROM subjects s JOIN unnest("):
            keys = sorted(set(zip(args[0], args[1], strict=True)))
            return [
                {"kind": k, "subject_id": i, "state": data[k, i]} for k, i in keys if (k, i) in data
            ]
        if sql.startswith("SELECT state FROM subjects WHERE kind = $1 AND subject_id = $2"):
            key = (args[0], args[1])
            return [{"state": data[key]}] if key in data else []
        if sql.startswith("INSERT INTO subjects (kind, subject_id, state)") and (
            "ON CONFLICT (kind, subject_id) DO UPDATE SET state = EXCLUDED.state" in sql
        ):
            for kind, subject_id, state in zip(*args, strict=True):
                data[kind, subject_id] = json.loads(state)  # s::jsonb
            return []
        return None
