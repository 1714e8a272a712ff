-- Ed25519 verdicts, computed once when the audit service ingests a record, so that a
-- replay (onedoor-audit verify) need not re-check every signature. A verdict is keyed by
-- the event id and record_hash = shared.signing.record_digest(signer's public key,
-- signer header, signature header, exact value bytes): a replay reuses a verdict only
-- for a record whose bytes, headers and signing key hash to exactly this value, and
-- checks every other record's signature itself. Append-only like the evidence tables.
CREATE TABLE signature_verdicts (
    event_id        uuid NOT NULL,
    record_hash     bytea NOT NULL CHECK (octet_length(record_hash) = 32),
    signer          text NOT NULL,
    key_fingerprint bytea NOT NULL,  -- sha256 of the raw public key checked against
    valid           boolean NOT NULL,
    topic_prefix    text NOT NULL,   -- the deployment's topic prefix (what a replay loads)
    topic           text NOT NULL,   -- logical topic, partition and offset first seen at
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    verified_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, record_hash)
);
-- What a replay reads: the digests of the good signatures of one deployment.
CREATE INDEX signature_verdicts_valid ON signature_verdicts (topic_prefix) INCLUDE (record_hash)
    WHERE valid;

CREATE TRIGGER signature_verdicts_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON signature_verdicts
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
