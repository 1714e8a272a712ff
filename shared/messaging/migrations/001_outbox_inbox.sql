-- Outbox: events written in the same transaction as the state change that caused them.
-- The relay publishes rows in id order and marks them sent; a crash between publish and
-- mark re-publishes the same event_id, which every consumer's inbox absorbs.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    event_id    uuid NOT NULL,
    topic       text NOT NULL,
    key         bytea,
    value       bytea NOT NULL,
    headers     jsonb NOT NULL DEFAULT '[]',
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

-- Inbox: every consumed event_id, recorded in the same transaction as its effects, so a
-- redelivered record is recognised and changes nothing.
CREATE TABLE inbox (
    event_id      uuid PRIMARY KEY,
    topic         text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset  bigint NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now()
);
