-- The CaseAccepted event as the bytes intake signed and published, instead of jsonb:
-- PostgreSQL no longer parses and re-prints about 600 bytes per case, and the router
-- reads them back with parse_event's one-pass path. Rows stored before keep their
-- jsonb text, which parse_event reads as any JSON object.
ALTER TABLE cases ALTER COLUMN accepted TYPE bytea USING convert_to(accepted::text, 'UTF8');
