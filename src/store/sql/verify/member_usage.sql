-- Every membership's used counts beside what the charges of that membership still hold: monthly
-- credits of the workspace's current cycle, top-up credits of any cycle.
WITH drawn AS (
    SELECT c.scope_id AS workspace_id, c.account_id, c.membership,
        SUM(CASE WHEN c.cycle = w.monthly_cycle THEN c.monthly_credits - c.refunded_monthly_credits ELSE 0 END)
            AS monthly,
        SUM(c.top_up_credits - c.refunded_top_up_credits) AS top_up
    FROM charges c JOIN workspaces w ON w.workspace_id = c.scope_id
    WHERE c.scope_kind = 'workspace' AND c.state IN ('held', 'captured')
    GROUP BY c.scope_id, c.account_id, c.membership
)
SELECT m.workspace_id || '/' || m.account_id AS owner_id, m.monthly_used_credits, m.top_up_used_credits,
       CAST(COALESCE(d.monthly, 0) AS BIGINT) AS monthly_drawn, CAST(COALESCE(d.top_up, 0) AS BIGINT) AS top_up_drawn
FROM members m LEFT JOIN drawn d
    ON d.workspace_id = m.workspace_id AND d.account_id = m.account_id AND d.membership = m.membership
ORDER BY m.workspace_id, m.account_id
