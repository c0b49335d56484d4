-- Net consumption per member and link: into `consumed` counts, out of it (refunds, forfeits)
-- takes back; units leaving the overflow pool count, units returning to it take back.
SELECT member_account_id, part,
CAST(COALESCE(SUM(CASE WHEN to_bucket = 'consumed' THEN amount_credits
    WHEN from_bucket = 'consumed' THEN -amount_credits ELSE 0 END), 0) AS BIGINT) AS consumed_credits,
CAST(COALESCE(SUM(CASE WHEN from_bucket = 'workspace_overflow' THEN overflow_units
    WHEN to_bucket = 'workspace_overflow' THEN -overflow_units ELSE 0 END), 0) AS BIGINT) AS overflow_units,
CAST(COALESCE(SUM(CASE WHEN from_bucket = 'workspace_overflow' THEN overage_units
    WHEN to_bucket = 'workspace_overflow' THEN -overage_units ELSE 0 END), 0) AS BIGINT) AS overage_units
FROM journal_entries WHERE ledger_scope_id = $1 AND created_at_ms >= $2 AND created_at_ms < $3
AND part IS NOT NULL AND member_account_id IS NOT NULL
GROUP BY member_account_id, part ORDER BY member_account_id, part
