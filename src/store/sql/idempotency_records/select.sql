SELECT request, response FROM idempotency_records
WHERE scope_id = $1 AND scope_kind = $2 AND idempotency_key = $3
