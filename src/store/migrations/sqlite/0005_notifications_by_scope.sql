-- Events are keyed by the scope whose transaction writes them (the workspace for a workspace's
-- events, else the account), as on Postgres, where that key distributes the table on Citus.
ALTER TABLE notifications ADD COLUMN scope_id TEXT NOT NULL DEFAULT '';
UPDATE notifications SET scope_id = COALESCE(workspace_id, account_id);
