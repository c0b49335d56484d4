DELETE FROM profile_members
WHERE workspace_id = $1 AND profile_id = $2 AND account_id = $3
