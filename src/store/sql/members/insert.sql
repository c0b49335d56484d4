INSERT INTO members (workspace_id, account_id, role, monthly_allowance_credits,
monthly_used_credits, top_up_allowance_credits, top_up_used_credits, created_at_ms, membership)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (workspace_id, account_id) DO NOTHING
