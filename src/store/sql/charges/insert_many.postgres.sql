INSERT INTO charges (scope_id, scope_kind, charge_key, account_id, state,
monthly_credits, top_up_credits, refunded_monthly_credits, refunded_top_up_credits, forfeited_credits, cycle,
created_at_ms, expires_at_ms, overflow_credits, refunded_overflow_credits, overflow_take, membership)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],
    $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[],
    $15::bigint[], $16::text[], $17::bigint[])
ON CONFLICT (scope_id, scope_kind, charge_key) DO NOTHING RETURNING charge_key
