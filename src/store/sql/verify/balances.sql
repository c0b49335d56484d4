-- Every bucket's stored balance beside the sum of its journal entries.
WITH movements AS (
    SELECT from_bucket AS bucket, from_owner_id AS owner_id, -amount_credits AS delta
    FROM journal_entries WHERE from_owner_id IS NOT NULL
    UNION ALL
    SELECT to_bucket, to_owner_id, amount_credits FROM journal_entries WHERE to_owner_id IS NOT NULL
), journal AS (
    SELECT bucket, owner_id, CAST(SUM(delta) AS BIGINT) AS credits FROM movements GROUP BY bucket, owner_id
), recorded AS (
    SELECT 'account_monthly' AS bucket, account_id AS owner_id, monthly_credits AS credits FROM accounts
    UNION ALL SELECT 'account_top_up', account_id, top_up_credits FROM accounts
    UNION ALL SELECT 'workspace_monthly', workspace_id, monthly_pool_credits FROM workspaces
    UNION ALL SELECT 'workspace_top_up', workspace_id, top_up_pool_credits FROM workspaces
    UNION ALL SELECT CASE scope_kind WHEN 'workspace' THEN 'workspace_held' ELSE 'account_held' END, scope_id,
        CAST(SUM(monthly_credits + top_up_credits + overflow_credits) AS BIGINT) FROM charges WHERE state = 'held'
        GROUP BY scope_kind, scope_id
    UNION ALL SELECT 'workspace_overflow', workspace_id, -overflow_lent_credits FROM workspaces
        WHERE overflow_lent_credits <> 0
)
SELECT COALESCE(r.bucket, j.bucket) AS bucket, COALESCE(r.owner_id, j.owner_id) AS owner_id,
       CAST(COALESCE(r.credits, 0) AS BIGINT) AS recorded, CAST(COALESCE(j.credits, 0) AS BIGINT) AS journal
FROM recorded r FULL OUTER JOIN journal j ON r.bucket = j.bucket AND r.owner_id = j.owner_id
ORDER BY 1, 2
