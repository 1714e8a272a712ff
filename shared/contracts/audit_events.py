"""The audit's own events: what it signs on the log about its store (issue 19, class 3).

Kept apart from ``shared.contracts.events`` (long enough already) and registered with its
registry when imported; ``shared.contracts.topology``, which every service and the
verifier import, imports this module, so every parse knows them.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.events import Event, registry


class StorePartition(BaseModel):
    """What the audit store held of one log partition when a checkpoint was taken."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str = Field(description="Logical topic name (no deployment prefix).")
    partition: int = Field(ge=0, description="Kafka partition.")
    reached: int = Field(
        ge=0, description="The next offset: every record below it is in the store."
    )
    rows: int = Field(ge=0, description="Store rows of this partition below ``reached``.")
    digest: str = Field(
        description="Rolling SHA-256 (hex) over those rows in offset order "
        "(services.audit.keyed.fold of offset and content hash), from 64 zeros.",
        examples=["0" * 64],
    )


class AuditCheckpoint(Event):
    """The audit service vouches on the log for what its store holds (topic
    ``audit.checkpoints``, signed by the audit): per log partition, the offset reached,
    the rows below it and their rolling digest. ``onedoor-audit verify`` holds the store
    to every checkpoint (``checkpoint_mismatch``). Belongs to no case: ``case_id`` and
    ``correlation_id`` are the nil UUID."""

    event_type: ClassVar[str] = "AuditCheckpoint"

    partitions: tuple[StorePartition, ...] = Field(
        description="The partitions whose store rows changed since the previous checkpoint "
        "of this audit replica (all of them in its first)."
    )
    rows: int = Field(ge=0, description="Store rows these partitions hold below ``reached``.")


registry.register(AuditCheckpoint)
