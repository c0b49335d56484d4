-- Key by key, for the reason charges/select_many.postgres.sql gives.
SELECT r.* FROM UNNEST($3::text[]) AS k(key) CROSS JOIN LATERAL (
    SELECT scope_id, scope_kind, idempotency_key, request, response FROM idempotency_records
    WHERE scope_id = $1 AND scope_kind = $2 AND idempotency_key = k.key LIMIT 1
) AS r
