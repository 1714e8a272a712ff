-- Promises counted in working days (issue 20): the number of working days the catalogue
-- promised and when one of them is left (the steps' warning time). NULL for cases routed
-- before, whose promise was counted in calendar days.
ALTER TABLE cases ADD COLUMN warn_at timestamptz, ADD COLUMN working_days integer;
