-- Members of the profiles whose ids are in (`$2`, `$3`], by profile and account.
SELECT profile_id, account_id FROM profile_members
WHERE workspace_id = $1 AND profile_id > $2 AND profile_id <= $3 ORDER BY profile_id, account_id
