INSERT INTO idempotency_records (scope_id, scope_kind, idempotency_key, request, created_at_ms)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
