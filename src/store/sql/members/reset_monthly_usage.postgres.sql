UPDATE members SET monthly_used_credits = 0 WHERE workspace_id = ANY($1) AND monthly_used_credits <> 0
