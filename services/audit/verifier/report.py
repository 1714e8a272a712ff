"""What ``verify`` reports: the violation kinds, one violation, the whole report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

MALFORMED_RECORD = "malformed_record"
DUPLICATE_EVENT_CONFLICT = "duplicate_event_conflict"
UNKNOWN_CASE = "unknown_case"
CATALOGUE_MISMATCH = "catalogue_mismatch"
STEP_OUT_OF_ORDER = "step_out_of_order"
UNASSIGNED_OUTCOME = "unassigned_outcome"
DUPLICATE_OUTCOME = "duplicate_outcome"
UNEXPLAINED_WAIT = "unexplained_wait"
CLOSED_TWICE = "closed_twice"
INCONSISTENT_CLOSE = "inconsistent_close"
REVIEW_FAILED = "review_failed"
OVERDUE = "overdue"
MISSING_SIGNATURE = "missing_signature"
BAD_SIGNATURE = "bad_signature"
WRONG_SIGNER = "wrong_signer"
ACCESS_WITHOUT_REASON = "access_without_reason"
ACCESS_BY_WRONG_ROLE = "access_by_wrong_role"
BROKEN_HASH_CHAIN = "broken_hash_chain"  # checked by the store, over its own hash chain
# Issue 19 (audit proof): what a dishonest insider or a subtle bug would do.
EVENT_ON_TWO_TOPICS = "event_on_two_topics"
FORGED_COPY = "forged_copy"
SUBJECT_MISMATCH = "subject_mismatch"
UNCAUSED_CLOSE = "uncaused_close"
WRONG_KEY = "wrong_key"
WRONG_PARTITION = "wrong_partition"
CLOCK_SKEW = "clock_skew"
LATE_CLOSE = "late_close"
STALLED_CASE = "stalled_case"
STEP_OVERDUE = "step_overdue"
KEY_NOT_VALID = "key_not_valid"
# Issue 17 (privacy): a case sealed under a data key its person's erasure deleted.
SEALED_UNDER_ERASED_KEY = "sealed_under_erased_key"
# Issue 20 (service promises): the deadline service's notices (verifier/deadlines.py).
DEADLINE_NOT_ANNOUNCED = "deadline_not_announced"
DEADLINE_ANNOUNCED_TWICE = "deadline_announced_twice"
DEADLINE_ANNOUNCED_EARLY = "deadline_announced_early"
DEADLINE_ANNOUNCED_WRONGLY = "deadline_announced_wrongly"
# Issue 19, class 3: the audit store held to the log and to its own keyed rows.
STORE_TAMPERED = "store_tampered"
MISSING_FROM_STORE = "missing_from_store"
STORE_DIFFERS_FROM_LOG = "store_differs_from_log"
NOT_IN_LOG = "not_in_log"
CHECKPOINT_MISMATCH = "checkpoint_mismatch"
# The kinds found in the audit store held to the log (storecheck), not in the log alone.
STORE_KINDS: tuple[str, ...] = (
    STORE_TAMPERED,
    MISSING_FROM_STORE,
    STORE_DIFFERS_FROM_LOG,
    NOT_IN_LOG,
    CHECKPOINT_MISMATCH,
)

VIOLATION_KINDS: tuple[str, ...] = (
    MALFORMED_RECORD,
    DUPLICATE_EVENT_CONFLICT,
    UNKNOWN_CASE,
    CATALOGUE_MISMATCH,
    STEP_OUT_OF_ORDER,
    UNASSIGNED_OUTCOME,
    DUPLICATE_OUTCOME,
    UNEXPLAINED_WAIT,
    CLOSED_TWICE,
    INCONSISTENT_CLOSE,
    REVIEW_FAILED,
    OVERDUE,
    MISSING_SIGNATURE,
    BAD_SIGNATURE,
    WRONG_SIGNER,
    ACCESS_WITHOUT_REASON,
    ACCESS_BY_WRONG_ROLE,
    BROKEN_HASH_CHAIN,
    EVENT_ON_TWO_TOPICS,
    FORGED_COPY,
    SUBJECT_MISMATCH,
    UNCAUSED_CLOSE,
    WRONG_KEY,
    WRONG_PARTITION,
    CLOCK_SKEW,
    LATE_CLOSE,
    STALLED_CASE,
    STEP_OVERDUE,
    KEY_NOT_VALID,
    SEALED_UNDER_ERASED_KEY,
    DEADLINE_NOT_ANNOUNCED,
    DEADLINE_ANNOUNCED_TWICE,
    DEADLINE_ANNOUNCED_EARLY,
    DEADLINE_ANNOUNCED_WRONGLY,
    STORE_TAMPERED,
    MISSING_FROM_STORE,
    STORE_DIFFERS_FROM_LOG,
    NOT_IN_LOG,
    CHECKPOINT_MISMATCH,
)

_DETAIL_LIMIT = 300


@dataclass(frozen=True)
class Violation:
    kind: str  # one of VIOLATION_KINDS
    case_id: UUID | None
    event_id: UUID | None
    topic: str
    partition: int
    offset: int
    detail: str  # a sentence for people; never an ID number or a phone number
    severity: Literal["error", "flag"] = "error"

    def to_json(self) -> dict[str, object]:
        """JSON-ready, as ``onedoor-audit verify --json`` lists it."""
        return {
            "kind": self.kind,
            "severity": self.severity,
            "case_id": str(self.case_id) if self.case_id else None,
            "event_id": str(self.event_id) if self.event_id else None,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "detail": self.detail,
        }


@dataclass
class VerifyReport:
    records: int  # records read, duplicates and malformed ones included
    events: int  # distinct event ids
    cases: int  # distinct accepted cases
    violations: list[Violation] = field(default_factory=list)
    signatures_checked: int = 0  # Ed25519 checks made by this replay
    signatures_reused: int = 0  # good verdicts reused for byte-identical records
    processes: int = 1  # how many processes shared the replay (see shards.merge_shards)
    # Set by verify_log, which reads the log and asks the store (0 for a replay of records
    # handed in): the whole time, the time spent reading, whether the store's hash
    # chains were walked (not when the store is unreachable or not migrated).
    seconds: float = 0.0
    read_seconds: float = 0.0
    chains_checked: bool = False
    # Whether the store was compared with the log (storecheck), and what the auditor
    # should know of that comparison's reach.
    store_compared: bool = False
    store_notes: list[str] = field(default_factory=list)

    def errors(self) -> list[Violation]:
        """The violations that break the zero-error promise (flags excluded)."""
        return [v for v in self.violations if v.severity == "error"]

    def by_kind(self) -> dict[str, int]:
        """Violation counts per kind, only kinds that occur, in ``VIOLATION_KINDS`` order."""
        counts = dict.fromkeys(VIOLATION_KINDS, 0)
        for v in self.violations:
            counts[v.kind] = counts.get(v.kind, 0) + 1
        return {kind: n for kind, n in counts.items() if n}

    def events_per_second(self) -> float:
        """Records replayed per second of the whole verify (0 when not timed)."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


def violation_order(v: Violation) -> tuple[str, int, int, str, str]:
    """How a report lists its violations: by log position, then kind."""
    return (v.topic, v.partition, v.offset, v.kind, str(v.event_id))


def short(text: str) -> str:
    """A detail cut to a readable length."""
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 3] + "..."
