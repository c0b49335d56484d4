DELETE FROM members WHERE workspace_id = $1 AND account_id = $2
