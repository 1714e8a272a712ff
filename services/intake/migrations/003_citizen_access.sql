-- Citizens read their own case (issue 16 item 2): receipt number + the last four
-- characters of the ID number + a one-time code sent to the case's phone.
-- Intake keeps only what that needs, never the full ID number: the ID number masked as
-- logs show it (first 3 and last 4 characters) and the phone the code is sent to.
CREATE TABLE citizen_contacts (
    case_id   uuid PRIMARY KEY REFERENCES cases (case_id),
    id_masked text NOT NULL,
    phone     text NOT NULL
);

-- The live one-time code of a receipt (a new code replaces it): only a salted SHA-256
-- of the code is stored; used_at set = spent.
CREATE TABLE citizen_codes (
    receipt_no text PRIMARY KEY,
    case_id    uuid NOT NULL REFERENCES cases (case_id),
    salt       bytea NOT NULL,
    code_hash  bytea NOT NULL,
    sent_at    timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

-- Wrong codes per receipt number, counted for any well-formed receipt number (known or
-- not, so a lock tells nothing about whether the receipt or its ID digits exist).
CREATE TABLE citizen_attempts (
    receipt_no   text PRIMARY KEY,
    wrong        integer NOT NULL DEFAULT 0,
    first_at     timestamptz NOT NULL,
    locked_until timestamptz,
    touched_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX citizen_attempts_touched ON citizen_attempts (touched_at);
