-- The charges of a JSON list of [scope id, scope kind, key] rows, of one scope or several.
SELECT c.scope_id, c.scope_kind, c.charge_key, c.account_id, c.state, c.monthly_credits, c.top_up_credits,
    c.refunded_monthly_credits, c.refunded_top_up_credits, c.forfeited_credits, c.cycle, c.created_at_ms,
    c.expires_at_ms, c.overflow_credits, c.refunded_overflow_credits, c.overflow_take, c.membership
FROM jsonb_each($1) AS k JOIN charges AS c
    ON c.scope_id = k.value ->> 0 AND c.scope_kind = k.value ->> 1 AND c.charge_key = k.value ->> 2
ORDER BY c.scope_kind, c.scope_id, c.charge_key
