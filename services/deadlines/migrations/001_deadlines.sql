-- The deadline service's durable timers (issue 20). Rebuilt from the log: every row
-- comes from a record its consumer took (inbox: once), so a restart loses nothing and
-- a re-read of the log adds nothing twice.

-- One row per task (StepAssigned): the step's due time and its warning time, as the
-- router recorded them.
CREATE TABLE timers (
    task_id        uuid PRIMARY KEY,      -- the StepAssigned's event id
    case_id        uuid NOT NULL,
    correlation_id uuid NOT NULL,
    step_index     integer NOT NULL,
    department     text NOT NULL,
    review         boolean NOT NULL,
    due_by         timestamptz NOT NULL,
    warn_at        timestamptz,           -- NULL: no warning (a task from before v2)
    -- Set once nothing more can be owed (decided in time, or both notices given): the
    -- clock's scans skip it.
    settled        boolean NOT NULL DEFAULT false
);
CREATE INDEX timers_open_warn ON timers (warn_at) WHERE NOT settled AND warn_at IS NOT NULL;
CREATE INDEX timers_open_due ON timers (due_by) WHERE NOT settled;

-- When a task was first answered (the outcome's occurred_at, by its causation id): an
-- outcome may be read before its task (other topic, other partition).
CREATE TABLE decided (
    task_id    uuid PRIMARY KEY,
    decided_at timestamptz NOT NULL
);

-- Cases closed, and when: an open case's steps stop owing notices once it closed (a
-- withdrawal); a review's do not.
CREATE TABLE closed_cases (
    case_id   uuid PRIMARY KEY,
    closed_at timestamptz NOT NULL
);

-- Every notice given, at most one per step and kind: the key makes a second one of the
-- same step impossible, whatever crashed and re-ran.
CREATE TABLE announced (
    case_id    uuid NOT NULL,
    step_index integer NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('DeadlineWarning', 'DeadlineMissed')),
    event_id   uuid NOT NULL UNIQUE,
    task_id    uuid NOT NULL,
    at         timestamptz NOT NULL,
    PRIMARY KEY (case_id, step_index, kind)
);
