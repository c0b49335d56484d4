-- Overflow pools, and the units the charges still hold, for comparing in code (both are JSON).
SELECT workspace_id, overflow_pool FROM workspaces WHERE overflow_pool IS NOT NULL ORDER BY workspace_id
