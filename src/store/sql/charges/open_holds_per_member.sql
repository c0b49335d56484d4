-- Open holds per member of a workspace.
SELECT account_id, COUNT(*) FROM charges
WHERE scope_id = $1 AND scope_kind = 'workspace' AND state = 'held' GROUP BY account_id
