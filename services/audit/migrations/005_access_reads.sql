-- People's reads of personal data (PersonalDataAccessed, issue 16 item 6), one row per
-- stored read, written with the event at ingest and rebuilt from the events with the
-- projection: what `onedoor-audit access` lists by case and by account and what the
-- statistics count by role, without walking every stored event. Derived, like
-- case_views; the evidence stays in `events`.
CREATE TABLE access_reads (
    event_id    uuid PRIMARY KEY,
    case_id     uuid NOT NULL,
    accessor    text NOT NULL,
    role        text NOT NULL,
    occurred_at timestamptz NOT NULL,
    read        jsonb NOT NULL
);
CREATE INDEX access_reads_by_case ON access_reads (case_id, occurred_at);
CREATE INDEX access_reads_by_accessor ON access_reads (accessor, occurred_at);
