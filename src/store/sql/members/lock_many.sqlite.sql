-- One workspace's members among the JSON list $2; the transaction holds the whole file.
SELECT workspace_id, account_id, role, monthly_allowance_credits, monthly_used_credits,
    top_up_allowance_credits, top_up_used_credits, created_at_ms, membership
FROM members WHERE workspace_id = $1 AND account_id IN (SELECT value FROM json_each($2))
ORDER BY account_id
