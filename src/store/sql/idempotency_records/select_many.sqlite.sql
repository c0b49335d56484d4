-- The records of a JSON list of [scope id, scope kind, key] rows, of one scope or several.
SELECT r.scope_id, r.scope_kind, r.idempotency_key, r.request, r.response
FROM jsonb_each($1) AS k JOIN idempotency_records AS r
    ON r.scope_id = k.value ->> 0 AND r.scope_kind = k.value ->> 1 AND r.idempotency_key = k.value ->> 2
