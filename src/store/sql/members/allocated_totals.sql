SELECT
CAST(COALESCE(SUM(CASE WHEN monthly_allowance_credits > monthly_used_credits
    THEN monthly_allowance_credits - monthly_used_credits ELSE 0 END), 0) AS BIGINT),
CAST(COALESCE(SUM(CASE WHEN top_up_allowance_credits > top_up_used_credits
    THEN top_up_allowance_credits - top_up_used_credits ELSE 0 END), 0) AS BIGINT)
FROM members WHERE workspace_id = $1 AND account_id <> $2
