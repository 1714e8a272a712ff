"""Kafka plumbing: consumer engine and inbox, outbox and relay, signatures, topics."""

from pathlib import Path

# The inbox and outbox tables, applied to every service's schema before its own migrations.
MESSAGING_MIGRATIONS = Path(__file__).parent / "migrations"
