-- Issue 19, class 3: a store its own superuser cannot rewrite without trace.
-- topic_prefix: the deployment whose log a row was read from (several deployments may
-- share one audit schema, as the tests and `make audit-drill` do); verify compares the
-- rows of its own deployment with its log. NULL on rows stored before this migration.
-- link_signature: the audit service's Ed25519 signature over the row's chain link, its
-- case, sequence and place in the log (services.audit.keyed; the rows of one batch
-- share one signature over a Merkle tree, as the services' records do); verify checks it
-- on every row of its deployment with the audit's public keys from the key registry.
ALTER TABLE events
    ADD COLUMN topic_prefix text,
    ADD COLUMN link_signature text;
ALTER TABLE conflicts ADD COLUMN topic_prefix text;
ALTER TABLE malformed ADD COLUMN topic_prefix text;

-- The live views that `onedoor-audit rebuild --replace` replaced because they differed
-- from a rebuild from the stored events: kept, never rewritten, so a replaced view stays
-- evidence of what the projection said before.
CREATE TABLE replaced_views (
    id          bigserial PRIMARY KEY,
    case_id     uuid NOT NULL,
    live        jsonb,           -- NULL: the case had no live view
    rebuilt     jsonb,           -- NULL: the stored events give the case no view
    replaced_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER replaced_views_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON replaced_views
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
