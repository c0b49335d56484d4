INSERT INTO profiles (workspace_id, profile_id, name, pool_access,
notify_on_assign, requires_consent, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (workspace_id, profile_id) DO NOTHING
