-- Memberships by (workspace, account), locked in key order. The join with the pairs takes each
-- by its primary key; `workspace_id = ANY($1)` tells Citus the shards (one, for a one-scope
-- batch), which it cannot read from a join's condition.
SELECT m.workspace_id, m.account_id, m.role, m.monthly_allowance_credits,
m.monthly_used_credits, m.top_up_allowance_credits, m.top_up_used_credits, m.created_at_ms, m.membership
FROM members AS m JOIN UNNEST($1::text[], $2::text[]) AS k(w, a) ON m.workspace_id = k.w AND m.account_id = k.a
WHERE m.workspace_id = ANY($1) ORDER BY m.workspace_id, m.account_id FOR UPDATE OF m
