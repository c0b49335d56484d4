-- A batch's wallet rows in one round trip: the workspaces, locked in id order, then the
-- memberships by (workspace, account), locked in key order. The members' scan waits on the count
-- of every locked workspace, so no member is locked before all the workspaces are (the global
-- lock order). Rows of both kinds come back in one shape, `is_workspace` telling them apart;
-- the columns the other kind lacks are NULL.
WITH w AS (
    SELECT workspace_id, owner_account_id, pool_size_credits, funded_pool_size_credits, monthly_pool_funded,
    monthly_pool_credits, top_up_pool_credits, monthly_cycle, low_monthly_pool_credits, low_top_up_pool_credits,
    low_member_remaining_percent, overflow_pool, overflow_lent_credits, low_overflow_units, created_at_ms,
    memberships
    FROM workspaces WHERE workspace_id = ANY($1) ORDER BY workspace_id FOR UPDATE
), m AS (
    SELECT m.workspace_id, m.account_id, m.role, m.monthly_allowance_credits, m.monthly_used_credits,
    m.top_up_allowance_credits, m.top_up_used_credits, m.created_at_ms, m.membership
    FROM members AS m JOIN UNNEST($2::text[], $3::text[]) AS k(w, a) ON m.workspace_id = k.w AND m.account_id = k.a
    WHERE m.workspace_id = ANY($1) AND (SELECT count(*) FROM w) > 0
    ORDER BY m.workspace_id, m.account_id FOR UPDATE OF m
)
SELECT true AS is_workspace, workspace_id, created_at_ms, owner_account_id, pool_size_credits,
funded_pool_size_credits, monthly_pool_funded, monthly_pool_credits, top_up_pool_credits, monthly_cycle,
low_monthly_pool_credits, low_top_up_pool_credits, low_member_remaining_percent, overflow_pool,
overflow_lent_credits, low_overflow_units, memberships,
NULL::text AS account_id, NULL::text AS role, NULL::bigint AS monthly_allowance_credits,
NULL::bigint AS monthly_used_credits, NULL::bigint AS top_up_allowance_credits, NULL::bigint AS top_up_used_credits,
NULL::bigint AS membership
FROM w
UNION ALL
SELECT false, workspace_id, created_at_ms, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
NULL, NULL, account_id, role, monthly_allowance_credits, monthly_used_credits, top_up_allowance_credits,
top_up_used_credits, membership
FROM m
