INSERT INTO idempotency_records
(scope_id, scope_kind, idempotency_key, request, response, created_at_ms)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, $2 FROM jsonb_each($1) WHERE true ORDER BY key
ON CONFLICT DO NOTHING RETURNING idempotency_key
