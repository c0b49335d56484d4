-- The answered requests in the JSON rows $1, in order. No ON CONFLICT: a taken key fails the
-- statement (see `write_batch` in sqlite.rs).
INSERT INTO idempotency_records
(scope_id, scope_kind, idempotency_key, request, response, created_at_ms)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, $2 FROM jsonb_each($1) ORDER BY key
