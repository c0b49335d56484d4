-- The new charges in the JSON rows $1, in order. No ON CONFLICT: a taken key fails the statement
-- (see `write_batch` in sqlite.rs).
INSERT INTO charges (scope_id, scope_kind, charge_key, account_id, state,
monthly_credits, top_up_credits, refunded_monthly_credits, refunded_top_up_credits, forfeited_credits, cycle,
created_at_ms, expires_at_ms, overflow_credits, refunded_overflow_credits, overflow_take, membership)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7,
value ->> 8, value ->> 9, value ->> 10, value ->> 11, value ->> 12, value ->> 13, value ->> 14, value ->> 15,
value ->> 16 FROM jsonb_each($1) ORDER BY key
