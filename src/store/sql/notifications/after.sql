SELECT position, kind, account_id, workspace_id, member_account_id, payload,
created_at_ms FROM notifications
WHERE position > $1 AND ($2 = '' OR account_id = $2 OR member_account_id = $2)
  AND ($3 = '' OR workspace_id = $3) AND ($4 = '' OR $4 LIKE '%,' || kind || ',%')
ORDER BY position LIMIT $5
