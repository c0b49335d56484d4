-- The workspaces among the JSON list $1, in id order; the transaction holds the whole file.
SELECT workspace_id, owner_account_id, pool_size_credits, funded_pool_size_credits, monthly_pool_funded,
    monthly_pool_credits, top_up_pool_credits, monthly_cycle, low_monthly_pool_credits, low_top_up_pool_credits,
    low_member_remaining_percent, overflow_pool, overflow_lent_credits, low_overflow_units, created_at_ms,
    memberships
FROM workspaces WHERE workspace_id IN (SELECT value FROM json_each($1))
ORDER BY workspace_id
