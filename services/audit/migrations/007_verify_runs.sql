-- The results of the verify runs the audit service makes on its schedule
-- (ONEDOOR_AUDIT_VERIFY_EVERY_S): derived facts (any run can be made again from the
-- log), kept so the auditor's dashboard shows the last one. Numbered 007: 006 is the
-- keyed store's.
CREATE TABLE verify_runs (
    id          bigserial PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    exit_code   integer NOT NULL,      -- onedoor-audit verify's: 0 clean, 1 violations, 2 failed
    report      jsonb,                 -- verify --json (details cut to the first 500)
    problem     text                   -- why a run gave no report
);
