"""``verify``: replay records and report every violation of the zero-error invariants.

Pure code, no I/O. The replay interleaves topics and partitions in any order, so nothing
here depends on arrival order across topics: the records are first collected per case
(:class:`~services.audit.verifier.log.Reader`), then every case is judged causally, by
event ids, causation ids and step indexes
(:class:`~services.audit.verifier.judge.CaseJudge`). Where one of two copies or facts
has to be called "the first", it is the one with the lowest log position (duplicate
event ids) or the earliest ``(occurred_at, event_id)`` (two facts of one case), never
the one read first.

The one process-wide effect: a replay pauses the cyclic garbage collector while it runs
(see ``gc_paused``).
"""

from __future__ import annotations

import gc
from collections.abc import Container, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime

from services.audit.verifier.clock import Timing
from services.audit.verifier.judge import CaseJudge
from services.audit.verifier.log import LogRecord, Reader
from services.audit.verifier.report import UNKNOWN_CASE, VerifyReport, violation_order
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import CaseAccepted
from shared.messaging.signing import PublicKeys


def verify(
    records: Iterable[LogRecord],
    *,
    catalogue: Catalogue,
    keys: PublicKeys,
    now: datetime,
    check_signatures: bool = True,
    verified: Container[bytes] = frozenset(),
    partitions: Mapping[str, int] | None = None,
    timing: Timing | None = None,
    published: Mapping[str, Catalogue] | None = None,
) -> VerifyReport:
    """Replay the log and report every violation of the zero-error invariants.

    ``check_signatures=False`` skips the Ed25519 checks only (the costly part); a
    missing header and a signer not allowed on the topic are reported either way.
    ``verified`` holds the ``shared.messaging.signing.record_digest`` of records whose signature
    was already found good (by the audit service, at ingest): a record whose digest is
    in it needs no Ed25519 check again; any other record, one whose bytes or headers
    changed since included, is checked here. Empty (the default): every signature is
    checked. ``partitions`` (each topic's partition count, the whole log's) turns on the
    checks of Kafka's own facts: each record keyed by its case id, in the partition the
    project's partitioner gives that key (``verify_log`` always passes it; records
    handed in without keys leave it out). Violations come sorted by log position, then
    kind. ``timing``: the allowed clock skew and how long the router may owe a case its
    next move (``Settings.audit_clock_skew_s`` and ``audit_stall_after_s``).
    ``published``: every catalogue version ever published, by version
    (``services.audit.catalogues``); each case is judged by the one that routed it, and
    only a version never published is a ``catalogue_mismatch`` (default: today's alone).

    Beyond the letter of each kind, decided here:

    - a case fact held once (CaseAccepted, CaseRouted, CaseRejected) seen again under
      another event id is a ``duplicate_event_conflict`` on the later one;
    - ``wrong_signer`` also covers an event type its signer never publishes (an
      outcome signed by the router) and an event whose ``producer`` is not its signer;
    - a StepAssigned on another department's tasks topic, or with a ``review`` flag
      that contradicts the slip, is ``step_out_of_order``; CaseAdvanced is held to the
      same slip and causation rules;
    - an outcome must also match its assignment's action and review flag;
    - a CaseAwaitingInfo must be caused by a StepNeedsInfo of the same step from the
      department assigned that step, be the only one for it, and come on a case not
      settled on the spot and not closed before it, else ``unexplained_wait``; a case
      whose last word is an explained wait (``services.audit.timeline.last_wait``, as
      the projection decides) waits for the applicant and is not ``overdue``;
    - ``catalogue_mismatch`` also covers a CaseRouted for another item or with
      another promise than the catalogue's, and a CaseRejected for an application the
      catalogue routes (and, where both exist, a CaseRouted for one it rejects);
    - one record with several problems of one kind gives one violation, its detail
      naming them all; a problem is reported where it starts, not at its consequences
      (an outcome reported as unassigned still counts as the case's outcome).
    - a record that fails a signature or signer check (``missing_signature``,
      ``bad_signature``, ``wrong_signer``, ``key_not_valid``) never counts toward its
      case, and nothing that only follows from it is reported again; a copy of a genuine
      event id that fails them is also a ``forged_copy``;
    - of two copies of one event id, the one on the event's own topic counts, whatever
      the topics' names; the other is an ``event_on_two_topics``.
    """
    with gc_paused():
        return replay(
            records,
            catalogue,
            keys,
            now,
            check_signatures=check_signatures,
            verified=verified,
            partitions=partitions,
            timing=timing,
            published=published,
        )[0]


def replay(
    records: Iterable[LogRecord],
    catalogue: Catalogue,
    keys: PublicKeys,
    now: datetime,
    *,
    check_signatures: bool,
    verified: Container[bytes],
    partitions: Mapping[str, int] | None = None,
    timing: Timing | None = None,
    published: Mapping[str, Catalogue] | None = None,
) -> tuple[VerifyReport, set[int], set[int]]:
    """``verify``'s work, and the ``UUID.int`` of every event id and every case id seen
    (what ``shards.merge_shards`` needs to prove shards independent)."""
    timing = timing or Timing()
    published = published or {catalogue.version: catalogue}
    reader = Reader(keys, check_signatures, verified, partitions, timing.skew)
    for record in records:
        reader.read(record)
    reader.resolve_duplicates()
    found = reader.found
    accepted_cases = 0
    for log in reader.cases.values():
        if log.accepted:
            accepted_cases += 1
            CaseJudge(log, catalogue, found, timing, published).judge(now)
        elif any(f.event_type == ACCEPTED for f in log.tainted.values()):
            # Its acceptance failed the signature checks (reported there): nothing of the
            # case can be judged, and none of it is a case "never accepted".
            continue
        else:
            found.extend(
                f.violation(UNKNOWN_CASE, f"{f.event_type} for a case never accepted")
                for f in log.everything()
            )

    found.sort(key=violation_order)
    signatures = reader.signatures
    report = VerifyReport(
        records=reader.records,
        events=len(reader.events),
        cases=accepted_cases,
        violations=found,
        signatures_checked=signatures.checked if signatures else 0,
        signatures_reused=signatures.reused if signatures else 0,
    )
    return report, set(reader.events), set(reader.cases)


ACCEPTED = CaseAccepted.event_type


@contextmanager
def gc_paused() -> Iterator[None]:
    """Rest CPython's cyclic collector during a replay (reading the log and checking it).

    A replay keeps every record and event alive until its case is judged, and the
    collector would rescan that growing heap (and every imported module) over and over,
    which costs a replay, and its reading from Kafka, several times its own work.
    Nothing here makes reference cycles; reference counting frees everything as usual
    while the collector rests. Nesting is fine: only the outermost use turns the
    collector back on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
