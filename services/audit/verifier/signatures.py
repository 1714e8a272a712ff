"""Who may sign what (from the topology), and Ed25519 checks made once per distinct
record: the signature rules of a replay."""

from __future__ import annotations

import hashlib
from collections.abc import Container, Mapping
from datetime import UTC, datetime, timedelta, tzinfo

from shared.contracts import topology
from shared.contracts.events import Event, registry
from shared.contracts.topology import INTAKE, ROUTER
from shared.messaging.keyring import KeyEntry
from shared.messaging.signing import PublicKeys, digest_after, digest_prefix


def allowed_signer(topic: str) -> str | None:
    """The one service allowed to publish on ``topic``; ``None`` for a topic nobody owns."""
    return topology.writer(topic)


# The services that publish each type of event (one, but for PersonalDataAccessed); None
# for a department's outcome (which department is the topic's business, see
# unassigned_outcome).
TYPE_OWNER: Mapping[str, frozenset[str] | None] = {
    name: topology.event_writers(name) for name in registry.classes()
}


def signer_problems(topic: str, signer: str, event: Event | None) -> list[str]:
    """Everything wrong with ``signer`` having signed ``event`` on ``topic``."""
    problems: list[str] = []
    owner = allowed_signer(topic)
    if owner is None:
        problems.append(f"no service may publish on topic {topic}")
    elif signer != owner:
        problems.append(f"signed by {signer}, but only {owner} publishes on {topic}")
    if event is not None:
        producer = TYPE_OWNER.get(event.event_type)
        if producer is None and signer in (INTAKE, ROUTER):
            problems.append(f"{event.event_type} is a department's outcome, not {signer}'s")
        elif producer is not None and signer not in producer:
            by = " or ".join(sorted(producer))
            problems.append(f"{event.event_type} is published by {by}, not {signer}")
        if event.producer != signer:
            problems.append(f"the event names producer {event.producer} but {signer} signed it")
    return problems


class SignerRule:
    """The fast yes for the usual record (its topic's owner per topic looked up once);
    :func:`signer_problems` says what is wrong with the others."""

    def __init__(self) -> None:
        self._owners: dict[str, str | None] = {}

    def fits(self, topic: str, signer: str, event: Event) -> bool:
        owner = self._owners.get(topic, "")
        if owner == "":
            owner = self._owners[topic] = allowed_signer(topic)
        expected = TYPE_OWNER.get(event.event_type)
        return (
            signer == owner
            and event.producer == signer
            and (signer in expected if expected else signer not in (INTAKE, ROUTER))
        )


class SignatureCache:
    """PublicKeys.verify, with two shortcuts that never trust a verdict for bytes it was
    not computed on. Every record is named by its ``record_digest`` (the signer's public
    key in this registry, the signer and signature headers, the exact value bytes):

    - a digest in ``verified`` (the good verdicts the audit store recorded at ingest)
      is a good signature: the very same check was made on the very same input;
    - a digest seen earlier in this replay (a re-delivered record) gets the same answer.

    Anything else, a record altered after ingest included, is checked with Ed25519 here.
    A stored verdict can only excuse the exact bytes it was computed on; it never
    condemns (a bad signature is always checked again)."""

    def __init__(self, keys: PublicKeys, verified: Container[bytes]) -> None:
        self._keys = keys
        self._verified = verified
        self._seen: dict[bytes, bool] = {}
        # signer -> sha256 fed its digest_prefix (each record's digest goes on from a copy)
        self._prefixes: dict[str, hashlib._Hash] = {}
        # signer -> [since, until): when every one of its keys is valid (in _tz)
        self._common: dict[str, tuple[datetime, datetime | None] | None] = {}
        self._tz: tzinfo | None = None
        self.reused = 0
        self.checked = 0

    def ok(self, signer: str, value: bytes, signature: str) -> bool:
        prefix = self._prefixes.get(signer)
        if prefix is None:
            raw = self._keys.raw(signer)
            if raw is None:
                return False  # PublicKeys.verify's answer for a signer without a key
            prefix = self._prefixes[signer] = hashlib.sha256(digest_prefix(raw, signer))
        digest = digest_after(prefix, signature, value)
        if digest in self._verified:
            self.reused += 1
            return True
        result = self._seen.get(digest)
        if result is None:
            self.checked += 1
            result = self._seen[digest] = self._keys.verify(signer, value, signature)
        return result

    def valid_then(self, signer: str, value: bytes, signature: str, at: datetime) -> bool:
        """Whether a signature that ``ok`` found good was made with a key of ``signer``
        valid at ``at`` (the event's ``occurred_at``, as the services check it): at once
        when every key of the signer was valid then, else with Ed25519 again."""
        tz = at.tzinfo
        if tz is not self._tz:
            # The bounds are re-expressed in the events' own UTC tzinfo: datetimes that
            # share a tzinfo compare without calling it (pydantic's costs a microsecond).
            self._tz, self._common = tz, {}
        if signer not in self._common:
            self._common[signer] = _common_validity(self._keys.entries(signer), tz)
        common = self._common[signer]
        if common is not None and common[0] <= at and (common[1] is None or at < common[1]):
            return True
        self.checked += 1
        return self._keys.verify(signer, value, signature, at)

    def window(
        self, signer: str, tz: tzinfo | None
    ) -> tuple[datetime, datetime, tzinfo | None] | None:
        """When every key of ``signer`` is valid, as ``valid_then`` last worked it out
        for ``tz``: (since, until, tz), ``until`` the largest datetime when open."""
        common = self._common.get(signer) if tz is self._tz else None
        if common is None:
            return None
        return common[0], common[1] or datetime.max.replace(tzinfo=tz), tz


def _common_validity(
    entries: tuple[KeyEntry, ...], tz: tzinfo | None
) -> tuple[datetime, datetime | None] | None:
    """When every one of the keys is valid, [since, until), in ``tz`` when it is UTC."""
    if not entries:
        return None
    since = max(e.valid_from for e in entries)
    ends = [e.valid_until for e in entries if e.valid_until is not None]
    until = min(ends) if ends else None
    if tz is not None and tz.utcoffset(None) == timedelta(0):
        since = since.astimezone(UTC).replace(tzinfo=tz)
        until = until.astimezone(UTC).replace(tzinfo=tz) if until is not None else None
    return since, until
