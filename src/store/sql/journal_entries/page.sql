SELECT entry_id, from_bucket, from_owner_id, to_bucket, to_owner_id,
amount_credits, cause, reference, member_account_id, created_at_ms, part, overflow_units, overage_units
FROM journal_entries WHERE ledger_scope_id = $1 AND entry_id > $2
AND ($3 = '' OR member_account_id = $3) AND ($4 = '' OR cause = $4)
AND created_at_ms >= $5 AND created_at_ms < $6 ORDER BY entry_id LIMIT $7
