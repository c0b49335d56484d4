-- Events are keyed by the scope whose transaction writes them: the workspace for a workspace's
-- events, else the account. On Citus the table is distributed by that key, so a workspace call's
-- events land on the workspace's shard inside its one-shard transaction; every unique constraint
-- therefore includes it. Stream positions stay unique across scopes because one publisher at a
-- time hands them out from `notification_stream`.
ALTER TABLE notifications ADD COLUMN scope_id TEXT NULL;
UPDATE notifications SET scope_id = COALESCE(workspace_id, account_id);
ALTER TABLE notifications ALTER COLUMN scope_id SET NOT NULL;
ALTER TABLE notifications DROP CONSTRAINT notifications_pkey;
ALTER TABLE notifications ADD PRIMARY KEY (scope_id, sequence);
DROP INDEX notifications_by_position;
CREATE UNIQUE INDEX notifications_by_position ON notifications (scope_id, position) WHERE position IS NOT NULL;
CREATE INDEX notifications_in_stream_order ON notifications (position) WHERE position IS NOT NULL;
