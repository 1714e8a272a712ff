-- Marks inbox rows whose record went to the dead-letter queue. Such a record is claimed
-- again (once) when an operator re-drives it; any other redelivery stays a no-op.
ALTER TABLE inbox ADD COLUMN dead_letter boolean NOT NULL DEFAULT false;
