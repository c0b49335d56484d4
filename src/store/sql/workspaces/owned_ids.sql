-- The ids only: the rows are then locked one by one by their key, which a distributed table
-- can do (a `FOR UPDATE` filtered by the owner cannot run on Citus).
SELECT workspace_id FROM workspaces WHERE owner_account_id = $1 ORDER BY workspace_id
