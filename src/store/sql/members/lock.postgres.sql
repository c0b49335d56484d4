SELECT workspace_id, account_id, role, monthly_allowance_credits, monthly_used_credits,
    top_up_allowance_credits, top_up_used_credits, created_at_ms, membership
FROM members WHERE workspace_id = $1 AND account_id = $2
FOR UPDATE
