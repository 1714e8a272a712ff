-- The audit's own append-only event store: every event of the log, once, with where it
-- was read (topic/partition/offset), a global position and a per-case hash chain
-- (each row's chain_hash covers the previous row's chain_hash of the same case).
CREATE TABLE events (
    position        bigserial PRIMARY KEY,
    event_id        uuid NOT NULL UNIQUE,
    case_id         uuid NOT NULL,
    case_seq        integer NOT NULL,
    event_type      text NOT NULL,
    producer        text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    topic           text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    signer          text,
    signature       text,
    value           bytea NOT NULL,
    content_hash    text NOT NULL,
    prev_hash       text NOT NULL,
    chain_hash      text NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (case_id, case_seq)
);
CREATE INDEX events_by_record ON events (topic, kafka_partition, kafka_offset);

-- The same event_id read again with different content: kept as evidence, never merged.
CREATE TABLE conflicts (
    id              bigserial PRIMARY KEY,
    event_id        uuid NOT NULL,
    topic           text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    value           bytea NOT NULL,
    content_hash    text NOT NULL,
    stored_hash     text NOT NULL,
    seen_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, kafka_partition, kafka_offset)
);

-- Records that are not events at all.
CREATE TABLE malformed (
    id              bigserial PRIMARY KEY,
    topic           text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    value           bytea NOT NULL,
    seen_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, kafka_partition, kafka_offset)
);

-- Head of each case's chain (mutable bookkeeping, derived from events).
CREATE TABLE case_heads (
    case_id    uuid PRIMARY KEY,
    seq        integer NOT NULL,
    chain_hash text NOT NULL
);

-- The live case-history projection (rebuildable from events at any time).
CREATE TABLE case_views (
    case_id    uuid PRIMARY KEY,
    view       jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Append-only, enforced by the database itself: no UPDATE, DELETE or TRUNCATE path
-- exists on the evidence tables, whatever the code does.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Statement-level, so even a statement that matches no row is refused.
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER conflicts_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON conflicts
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER malformed_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON malformed
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
