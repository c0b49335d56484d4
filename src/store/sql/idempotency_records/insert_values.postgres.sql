-- The columns of insert_many.postgres.sql, for a multi-row VALUES list (the per-table form).
-- Citus routes a multi-row VALUES list to the rows' shard; an INSERT … SELECT FROM UNNEST it pulls
-- to the coordinator and copies back, which forces two-phase commit even for one shard.
INSERT INTO idempotency_records
(scope_id, scope_kind, idempotency_key, request, response, created_at_ms)
