-- The relay deletes the rows it has published (a DELETE only flags the old row version;
-- an UPDATE would write a new version of every row, value and all), so every row in the
-- outbox is unsent and nothing ever set sent_at. Drop the column (and with it the partial
-- index on it): the relay reads the oldest rows by the primary key, and the backlog is
-- the row count.
ALTER TABLE outbox DROP COLUMN sent_at;
