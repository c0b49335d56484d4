UPDATE profiles SET name = $3, pool_access = $4, notify_on_assign = $5,
requires_consent = $6 WHERE workspace_id = $1 AND profile_id = $2
