SELECT workspace_id, profile_id, name, pool_access, notify_on_assign,
requires_consent, created_at_ms FROM profiles WHERE workspace_id = $1 AND profile_id > $2
ORDER BY profile_id LIMIT $3
