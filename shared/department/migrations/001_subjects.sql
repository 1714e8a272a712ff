-- What a department knows about each subject (a person by resident ID, a company by
-- credit code), as the JSON of the department's own record model.
CREATE TABLE subjects (
    kind        text NOT NULL,
    subject_id  text NOT NULL,
    state       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, subject_id)
);
