-- Distributes creditpool's tables on a Citus cluster: run once by `creditpool distribute`, on the
-- coordinator, after `creditpool migrate` and before any traffic. Every table is distributed by
-- the scope key its statements filter by (a workspace's rows all by the workspace id, a personal
-- account's by the account id), so one scope's batch stays on one shard; all keys are text, so the
-- tables share one colocation group. The stream counter is one row every replica's publisher
-- reads: a reference table. Later migrations must keep every unique constraint and foreign key
-- including the distribution column (the test `every_table_is_distributed_by_a_key_each_unique_
-- constraint_and_foreign_key_includes` checks that against the migrated schema).
SELECT create_reference_table('notification_stream');
SELECT create_distributed_table('accounts', 'account_id');
SELECT create_distributed_table('workspaces', 'workspace_id', colocate_with => 'accounts');
SELECT create_distributed_table('members', 'workspace_id', colocate_with => 'workspaces');
SELECT create_distributed_table('profiles', 'workspace_id', colocate_with => 'workspaces');
SELECT create_distributed_table('profile_members', 'workspace_id', colocate_with => 'workspaces');
SELECT create_distributed_table('overflow_periods', 'workspace_id', colocate_with => 'workspaces');
SELECT create_distributed_table('charges', 'scope_id', colocate_with => 'workspaces');
SELECT create_distributed_table('idempotency_records', 'scope_id', colocate_with => 'workspaces');
SELECT create_distributed_table('journal_entries', 'ledger_scope_id', colocate_with => 'workspaces');
SELECT create_distributed_table('notifications', 'scope_id', colocate_with => 'workspaces');
