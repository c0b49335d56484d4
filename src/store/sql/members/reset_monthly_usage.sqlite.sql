UPDATE members SET monthly_used_credits = 0
WHERE workspace_id IN (SELECT value FROM json_each($1)) AND monthly_used_credits <> 0
