SELECT COUNT(*), CAST(COALESCE(SUM(monthly_credits + top_up_credits + overflow_credits), 0) AS BIGINT)
FROM charges WHERE scope_id = $1 AND scope_kind = $2 AND account_id = $3 AND state = 'held'
