-- The charges of (scope id, scope kind, key) triples of several scopes (a batch of many
-- workspaces on one Postgres; one scope uses select_many.postgres.sql, which Citus routes to its
-- shard), each looked up by its whole primary key.
SELECT c.* FROM UNNEST($1::text[], $2::text[], $3::text[]) AS k(scope_id, scope_kind, key) CROSS JOIN LATERAL (
    SELECT scope_id, scope_kind, charge_key, account_id, state, monthly_credits, top_up_credits,
        refunded_monthly_credits, refunded_top_up_credits, forfeited_credits, cycle, created_at_ms, expires_at_ms,
        overflow_credits, refunded_overflow_credits, overflow_take, membership
    FROM charges WHERE scope_id = k.scope_id AND scope_kind = k.scope_kind AND charge_key = k.key LIMIT 1
) AS c
