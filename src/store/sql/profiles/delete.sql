DELETE FROM profiles WHERE workspace_id = $1 AND profile_id = $2
