"""The store held to the log (services/audit/verifier/storecheck.py), with plain values:
what each comparison reports, and what it must leave alone."""

from __future__ import annotations

import hashlib
from uuid import uuid4

import nacl.signing

from services.audit.checkpoints import Tally, checkpoint_event
from services.audit.verifier.log import LogRecord
from services.audit.verifier.report import Violation
from services.audit.verifier.storecheck import (
    StoreRow,
    StoreSnapshot,
    check_checkpoints,
    compare,
    unmatched,
)
from shared.messaging.signing import PublicKeys, Signer

TOPIC = "cases.accepted"
PLACE = (TOPIC, 0)


def record(offset: int, value: bytes) -> LogRecord:
    return LogRecord(TOPIC, 0, offset, value, "intake", "sig")


def row(offset: int, value: bytes, kind: str = "event") -> StoreRow:
    return StoreRow(kind, PLACE, offset, hashlib.sha256(value).digest(), uuid4(), uuid4())


def snap(rows: list[StoreRow], committed: int, end: int) -> StoreSnapshot:
    by_offset: dict[int, list[StoreRow]] = {}
    for r in rows:
        by_offset.setdefault(r.offset, []).append(r)
    return StoreSnapshot({PLACE: by_offset}, {PLACE: committed}, {PLACE: end}, frozenset({PLACE}))


NO_KEYS = PublicKeys({})


def new_signer() -> Signer:
    return Signer("audit", nacl.signing.SigningKey.generate())


def kinds(found: list[Violation]) -> list[tuple[str, int]]:
    return sorted((v.kind, v.offset) for v in found)


def test_a_store_that_matches_the_log_is_clean() -> None:
    log = [record(i, b"v%d" % i) for i in range(3)]
    store = snap([row(i, b"v%d" % i) for i in range(3)], committed=3, end=3)
    assert compare(log, store, set(), NO_KEYS) == []


def test_each_difference_is_named_where_it_is() -> None:
    log = [record(i, b"v%d" % i) for i in range(4)]
    store = snap([row(0, b"v0"), row(1, b"forged"), row(3, b"v3"), row(9, b"x")], 4, 4)
    assert kinds(compare(log, store, set(), NO_KEYS)) == [
        ("missing_from_store", 2),
        ("not_in_log", 9),
        ("store_differs_from_log", 1),
    ]


def test_a_redelivery_stored_once_and_records_not_committed_yet_are_not_missing() -> None:
    log = [record(0, b"v0"), record(1, b"v0"), record(2, b"v2")]
    store = snap([row(0, b"v0")], committed=2, end=3)
    # Offset 1 repeats offset 0's bytes (stored once); offset 2 is past the commit.
    assert unmatched(log, store) == {hashlib.sha256(b"v0").digest()}
    assert compare(log, store, {hashlib.sha256(b"v0").digest()}, NO_KEYS) == []


def test_rows_logged_after_the_replay_read_the_log_wait_for_the_next_run() -> None:
    log = [record(0, b"v0")]
    store = snap([row(0, b"v0"), row(1, b"v1")], committed=1, end=2)
    assert compare(log, store, set(), NO_KEYS) == []


def checkpoint_record(signer: Signer, rows: list[StoreRow], offset: int) -> LogRecord:
    tally = Tally()
    for r in rows:
        tally.add(r.offset, r.digest)
    value = checkpoint_event([(PLACE, tally)]).to_json()
    return LogRecord("audit.checkpoints", 0, offset, value, "audit", signer.sign(value))


def test_a_checkpoint_holds_the_rows_it_counted() -> None:
    audit = new_signer()
    keys = PublicKeys({"audit": audit.public_key()})
    rows = [row(i, b"v%d" % i) for i in range(3)]
    mark = checkpoint_record(audit, rows[:2], 7)
    assert check_checkpoints([mark], snap(rows, 3, 3), keys) == []
    # The second row deleted, then the first rewritten: the checkpoint no longer adds up.
    for changed in ([rows[0], rows[2]], [row(0, b"forged"), rows[1], rows[2]]):
        found = check_checkpoints([mark], snap(changed, 3, 3), keys)
        assert [(v.kind, v.topic, v.offset) for v in found] == [
            ("checkpoint_mismatch", "audit.checkpoints", 7)
        ]


def test_a_checkpoint_the_audit_did_not_sign_vouches_for_nothing() -> None:
    forger = new_signer()  # another key than the registry's
    keys = PublicKeys({"audit": new_signer().public_key()})
    rows = [row(i, b"v%d" % i) for i in range(2)]
    forged = checkpoint_record(forger, [row(0, b"other")], 3)
    assert check_checkpoints([forged], snap(rows, 2, 2), keys) == []
