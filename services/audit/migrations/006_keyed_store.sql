-- Issue 19, class 3: a store its own superuser cannot rewrite without trace.
-- topic_prefix: the deployment whose log a row was read from (several deployments may
-- share one audit schema, as the tests and `make audit-drill` do); verify compares the
-- rows of its own deployment with its log. NULL on rows stored before this migration.
-- link_mac: a MAC over the row's chain link, its case, sequence and place in the log,
-- under a secret derived from the audit service's private key (services.audit.keyed);
-- verify checks it on every row of its deployment.
ALTER TABLE events
    ADD COLUMN topic_prefix text,
    ADD COLUMN link_mac bytea CHECK (link_mac IS NULL OR octet_length(link_mac) = 32);
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
