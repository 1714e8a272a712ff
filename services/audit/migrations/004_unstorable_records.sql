-- Records PostgreSQL cannot store as events (a NUL character in a text field or a
-- header, an untranslatable character, a value out of range: the DataError family) are
-- kept in `malformed` as evidence instead, so the store goes on growing: their exact
-- bytes, where they came from, their signer and signature headers as the raw bytes they
-- were, and the reason. `reason` is NULL for a record that is not an event at all.
ALTER TABLE malformed
    ADD COLUMN reason text,
    ADD COLUMN signer bytea,
    ADD COLUMN signature bytea;
