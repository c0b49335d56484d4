INSERT INTO profile_members (workspace_id, profile_id, account_id)
VALUES ($1, $2, $3) ON CONFLICT DO NOTHING
