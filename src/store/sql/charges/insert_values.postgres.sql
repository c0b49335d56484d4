-- The columns of insert_many.postgres.sql, for a multi-row VALUES list (the per-table form).
-- Citus routes a multi-row VALUES list to the rows' shard; an INSERT … SELECT FROM UNNEST it pulls
-- to the coordinator and copies back, which forces two-phase commit even for one shard.
INSERT INTO charges (scope_id, scope_kind, charge_key, account_id,
state, monthly_credits, top_up_credits, refunded_monthly_credits, refunded_top_up_credits, forfeited_credits,
cycle, created_at_ms, expires_at_ms, overflow_credits, refunded_overflow_credits, overflow_take, membership)
