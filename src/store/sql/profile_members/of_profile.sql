SELECT account_id FROM profile_members
WHERE workspace_id = $1 AND profile_id = $2 ORDER BY account_id
