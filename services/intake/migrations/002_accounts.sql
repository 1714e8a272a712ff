-- Staff accounts (issue 16): who may sign in, in which role, bound to what.
CREATE TABLE accounts (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    role          text NOT NULL
                  CHECK (role IN ('clerk', 'department_officer', 'auditor', 'operator', 'admin')),
    centre_id     text,
    window_id     text,
    department    text,
    password_hash text NOT NULL,  -- Argon2id, PHC string
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'clerk') = (centre_id IS NOT NULL AND window_id IS NOT NULL)),
    CHECK ((role = 'department_officer') = (department IS NOT NULL))
);

-- Refresh tokens: only their SHA-256 is stored; revoked_at set = revoked.
CREATE TABLE refresh_tokens (
    token_hash  bytea PRIMARY KEY,
    account     text NOT NULL REFERENCES accounts (name),
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_account ON refresh_tokens (account);
