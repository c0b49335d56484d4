-- Reads the rows of `charge_row` (sqlite.rs), like insert_many.sqlite.sql.
UPDATE charges SET state = u.value ->> 4, monthly_credits = u.value ->> 5,
top_up_credits = u.value ->> 6, refunded_monthly_credits = u.value ->> 7, refunded_top_up_credits = u.value ->> 8,
forfeited_credits = u.value ->> 9, expires_at_ms = u.value ->> 12, overflow_credits = u.value ->> 13,
refunded_overflow_credits = u.value ->> 14, overflow_take = u.value ->> 15
FROM jsonb_each($1) AS u
WHERE scope_id = u.value ->> 0 AND scope_kind = u.value ->> 1 AND charge_key = u.value ->> 2
