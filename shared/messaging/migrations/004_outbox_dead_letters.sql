-- Outbox rows the relay can never publish (too large for the topic, or refused by the
-- broker for a reason that will not change): moved aside so the rows after them go out.
-- A row that fits is published to its topic's DLQ (dlq_topic/dlq_partition/dlq_offset
-- say where) and its value is not kept twice; one that does not fit keeps its exact bytes
-- here. Every row of this table is a dead letter an operator must look at (the service's
-- /health counts them as outbox_dead_letters).
CREATE TABLE outbox_dead_letters (
    id            bigserial PRIMARY KEY,
    outbox_id     bigint NOT NULL,
    event_id      uuid NOT NULL,
    topic         text NOT NULL,
    key           bytea,
    value         bytea,
    value_size    integer NOT NULL,
    headers       jsonb NOT NULL,
    reason        text NOT NULL,
    error         text NOT NULL,
    dlq_topic     text,
    dlq_partition integer,
    dlq_offset    bigint,
    created_at    timestamptz NOT NULL,
    failed_at     timestamptz NOT NULL DEFAULT now()
);
