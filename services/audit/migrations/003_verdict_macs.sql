-- Each verdict carries a MAC (shared.signing.verdict_mac, keyed BLAKE2b) under a secret derived
-- from the audit service's own private key: a row written straight into the database,
-- by anyone without that key, is never taken as a good signature by a replay (it checks
-- such records with Ed25519 itself). Rows without a MAC are never reused either.
ALTER TABLE signature_verdicts
    ADD COLUMN mac bytea CHECK (mac IS NULL OR octet_length(mac) = 32);

-- What a replay reads: event id, digest and MAC of one deployment's good verdicts.
DROP INDEX signature_verdicts_valid;
CREATE INDEX signature_verdicts_reusable ON signature_verdicts (topic_prefix)
    INCLUDE (event_id, record_hash, mac)
    WHERE valid AND mac IS NOT NULL;
