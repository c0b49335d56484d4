DELETE FROM idempotency_records WHERE (scope_id, scope_kind, idempotency_key) IN (
SELECT scope_id, scope_kind, idempotency_key FROM idempotency_records WHERE created_at_ms < $1 LIMIT $2)
