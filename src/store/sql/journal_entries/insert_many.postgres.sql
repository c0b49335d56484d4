INSERT INTO journal_entries (ledger_scope_id, from_bucket, from_owner_id,
to_bucket, to_owner_id, amount_credits, cause, reference, member_account_id, created_at_ms, part, overflow_units,
overage_units)
SELECT s, fb, fo, tb, t, a, c, r, m, $10, p, q, o FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
    $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[], $11::text[], $12::bigint[], $13::bigint[])
    AS u(s, fb, fo, tb, t, a, c, r, m, p, q, o)
