-- The router's view of each case: its routing slip and where it stands.
CREATE TABLE cases (
    case_id           uuid PRIMARY KEY,
    correlation_id    uuid NOT NULL,
    item_code         text NOT NULL,
    catalogue_version text NOT NULL,
    steps             jsonb NOT NULL,
    accepted          jsonb NOT NULL,   -- the CaseAccepted event: later steps need its form
    status            text NOT NULL CHECK (status IN ('in_progress', 'waiting_info', 'closed')),
    on_spot           boolean NOT NULL,
    current_step      integer,
    outcome           text CHECK (outcome IN ('approved', 'rejected')),
    promised_by       timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Cases rejected before routing (unknown item...): remembered so a second CaseAccepted
-- for the same case id is recognised.
CREATE TABLE rejected_cases (
    case_id     uuid PRIMARY KEY,
    reason_code text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
