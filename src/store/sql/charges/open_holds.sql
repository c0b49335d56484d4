-- Open holds of a scope (optionally one member), by member, oldest first, after a cursor.
SELECT scope_id, scope_kind, charge_key, account_id, state, monthly_credits,
top_up_credits, refunded_monthly_credits, refunded_top_up_credits, forfeited_credits, cycle, created_at_ms, expires_at_ms,
overflow_credits, refunded_overflow_credits, overflow_take, membership
FROM charges WHERE scope_id = $1 AND scope_kind = $2 AND state = 'held' AND ($3 = '' OR account_id = $3)
AND (account_id, created_at_ms, charge_key) > ($4, $5, $6)
ORDER BY account_id, created_at_ms, charge_key LIMIT $7
