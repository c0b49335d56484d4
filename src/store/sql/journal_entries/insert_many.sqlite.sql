INSERT INTO journal_entries (ledger_scope_id, from_bucket, from_owner_id,
to_bucket, to_owner_id, amount_credits, cause, reference, member_account_id, created_at_ms, part,
overflow_units, overage_units)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7,
value ->> 8, $2, value ->> 9, value ->> 10, value ->> 11 FROM jsonb_each($1) ORDER BY key
