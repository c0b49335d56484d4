INSERT INTO idempotency_records
(scope_id, scope_kind, idempotency_key, request, response, created_at_ms)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, $2 FROM json_each($1) WHERE true ORDER BY key
ON CONFLICT DO NOTHING RETURNING idempotency_key
