UPDATE workspaces SET pool_size_credits = $2, funded_pool_size_credits = $3,
monthly_pool_funded = $4, monthly_pool_credits = $5, top_up_pool_credits = $6, low_monthly_pool_credits = $7,
low_top_up_pool_credits = $8, low_member_remaining_percent = $9, monthly_cycle = $10, overflow_pool = $11,
overflow_lent_credits = $12, low_overflow_units = $13, memberships = $14 WHERE workspace_id = $1
