-- The members among the JSON list of [workspace, account] pairs $1, each by its primary key, in
-- key order; the transaction holds the whole file.
SELECT m.workspace_id, m.account_id, m.role, m.monthly_allowance_credits, m.monthly_used_credits,
    m.top_up_allowance_credits, m.top_up_used_credits, m.created_at_ms, m.membership
FROM json_each($1) AS k
JOIN members AS m ON m.workspace_id = k.value ->> 0 AND m.account_id = k.value ->> 1
ORDER BY m.workspace_id, m.account_id
