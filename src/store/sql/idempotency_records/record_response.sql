UPDATE idempotency_records SET response = $4
WHERE scope_id = $1 AND scope_kind = $2 AND idempotency_key = $3
