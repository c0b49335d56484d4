INSERT INTO overflow_periods (workspace_id, cycle, period, quota_units,
used_units, overage_units, started_at_ms, ended_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (workspace_id, cycle) DO NOTHING
