INSERT INTO idempotency_records
(scope_id, scope_kind, idempotency_key, request, response, created_at_ms)
SELECT s, t, k, q, r, $6 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
    AS u(s, t, k, q, r)
ON CONFLICT DO NOTHING RETURNING idempotency_key
