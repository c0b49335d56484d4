SELECT CAST(COALESCE(SUM(pool_size_credits), 0) AS BIGINT) FROM workspaces
WHERE owner_account_id = $1 AND workspace_id <> $2
