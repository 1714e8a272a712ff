-- A centre's head (role head, issue 21): bound to a centre, with no window; opens the
-- dashboard of its centre's cases. Numbered 005 to keep clear of another branch's 004.
ALTER TABLE accounts DROP CONSTRAINT accounts_role_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_role_check
    CHECK (role IN ('clerk', 'department_officer', 'auditor', 'operator', 'admin', 'head'));
ALTER TABLE accounts ADD CONSTRAINT accounts_head_centre
    CHECK ((role = 'head') = (centre_id IS NOT NULL AND window_id IS NULL));
