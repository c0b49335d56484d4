-- The records of (scope id, scope kind, key) triples of several scopes (a batch of many
-- workspaces on one Postgres; one scope uses select_many.postgres.sql, which Citus routes to its
-- shard), each looked up by its whole primary key.
SELECT r.* FROM UNNEST($1::text[], $2::text[], $3::text[]) AS k(scope_id, scope_kind, key) CROSS JOIN LATERAL (
    SELECT scope_id, scope_kind, idempotency_key, request, response FROM idempotency_records
    WHERE scope_id = k.scope_id AND scope_kind = k.scope_kind AND idempotency_key = k.key LIMIT 1
) AS r
