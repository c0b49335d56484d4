-- The columns of insert_many.postgres.sql, for a multi-row VALUES list (the per-table form).
-- Citus routes a multi-row VALUES list to the rows' shard; an INSERT … SELECT FROM UNNEST it pulls
-- to the coordinator and copies back, which forces two-phase commit even for one shard.
INSERT INTO journal_entries (ledger_scope_id, from_bucket,
from_owner_id, to_bucket, to_owner_id, amount_credits, cause, reference, member_account_id, created_at_ms, part,
overflow_units, overage_units)
