-- Takes the same 17 columns as insert_many.postgres.sql, then the scope keys.
UPDATE charges AS c SET state = u.state, monthly_credits = u.monthly,
top_up_credits = u.top_up, refunded_monthly_credits = u.refunded_monthly,
refunded_top_up_credits = u.refunded_top_up, forfeited_credits = u.forfeited, expires_at_ms = u.expires_at_ms,
overflow_credits = u.overflow, refunded_overflow_credits = u.refunded_overflow, overflow_take = u.overflow_take
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],
    $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[],
    $15::bigint[], $16::text[], $17::bigint[])
    AS u(scope_id, scope_kind, charge_key, account_id, state, monthly, top_up, refunded_monthly, refunded_top_up,
         forfeited, cycle, created_at_ms, expires_at_ms, overflow, refunded_overflow, overflow_take, membership)
WHERE c.scope_id = ANY($18) AND c.scope_id = u.scope_id AND c.scope_kind = u.scope_kind
    AND c.charge_key = u.charge_key
