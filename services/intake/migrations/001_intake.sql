-- Intake's own view of every case it accepted, kept current from cases.routing.
CREATE TABLE cases (
    case_id        uuid PRIMARY KEY,
    receipt_no     text NOT NULL UNIQUE,
    item_code      text NOT NULL,
    applicant_kind text NOT NULL,
    centre_id      text NOT NULL,
    window_id      text NOT NULL,
    channel        text NOT NULL,
    status         text NOT NULL DEFAULT 'accepted',
    current_step   integer,
    department     text,
    outcome        text,
    on_spot        boolean NOT NULL DEFAULT false,
    reason_code    text,
    message        text,
    review_flag    text,
    accepted_at    timestamptz NOT NULL,
    routed_at      timestamptz,
    closed_at      timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Receipt numbers: per centre and day, from 1, no gaps (the counter row is updated in the
-- same transaction as the case, so a rolled-back request does not use a number up).
CREATE TABLE receipt_counters (
    centre_id text NOT NULL,
    day       date NOT NULL,
    last      integer NOT NULL,
    PRIMARY KEY (centre_id, day)
);

-- Idempotency-Key: a retried request gets the first request's case back.
CREATE TABLE idempotency_keys (
    key          text PRIMARY KEY,
    request_hash text NOT NULL,
    case_id      uuid NOT NULL REFERENCES cases (case_id),
    created_at   timestamptz NOT NULL DEFAULT now()
);
