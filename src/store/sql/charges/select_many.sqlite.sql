SELECT scope_id, scope_kind, charge_key, account_id, state, monthly_credits, top_up_credits,
    refunded_monthly_credits, refunded_top_up_credits, forfeited_credits, cycle, created_at_ms, expires_at_ms,
    overflow_credits, refunded_overflow_credits, overflow_take, membership
FROM charges WHERE scope_id = $1 AND scope_kind = $2 AND charge_key IN (SELECT value FROM json_each($3))
ORDER BY charge_key
