SELECT started_at_ms, ended_at_ms FROM overflow_periods
WHERE workspace_id = $1 AND period = $2 ORDER BY cycle DESC LIMIT 1
