INSERT INTO notifications
(account_id, kind, workspace_id, member_account_id, payload, created_at_ms, scope_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
