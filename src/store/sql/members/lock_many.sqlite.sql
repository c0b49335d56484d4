-- The members among the JSON list of [workspace, account] pairs $1, each by its primary key, in
-- key order; the transaction holds the whole file.
SELECT workspace_id, account_id, role, monthly_allowance_credits, monthly_used_credits,
    top_up_allowance_credits, top_up_used_credits, created_at_ms, membership
FROM members WHERE (workspace_id, account_id) IN (SELECT value ->> 0, value ->> 1 FROM jsonb_each($1))
ORDER BY workspace_id, account_id
