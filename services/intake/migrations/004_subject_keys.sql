-- Privacy by design (issue 17 item 5): one data key per applicant, the only place it
-- exists. Events carry the applicant's fields sealed under it (shared.contracts.sealing);
-- deleting the row (onedoor-admin erase) makes every copy anywhere unreadable.
-- ``wrapped``: the key sealed with a key derived from the centre's privacy secret file,
-- so a copy of this database alone opens nothing.
CREATE TABLE subject_keys (
    ref        text PRIMARY KEY,
    key_id     uuid NOT NULL UNIQUE,
    wrapped    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Which person each case is for (by pseudonym): what erasure finds the person's
-- citizen contacts by.
ALTER TABLE cases ADD COLUMN applicant_ref text;
CREATE INDEX cases_applicant_ref ON cases (applicant_ref) WHERE applicant_ref IS NOT NULL;

-- Departments open the fields their rules use: they read wrapped keys by reference
-- through this function only (deploy/dbroles.py gives department roles USAGE on this
-- schema, never rights on its tables). SECURITY DEFINER: it runs as intake's role.
CREATE FUNCTION subject_data_keys(refs text[])
RETURNS TABLE (ref text, key_id uuid, wrapped bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT
AS $$ SELECT k.ref, k.key_id, k.wrapped FROM subject_keys k WHERE k.ref = ANY(refs) $$;
