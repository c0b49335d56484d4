UPDATE members SET role = u.value ->> 2, monthly_allowance_credits = u.value ->> 3,
monthly_used_credits = u.value ->> 4, top_up_allowance_credits = u.value ->> 5, top_up_used_credits = u.value ->> 6
FROM jsonb_each($1) AS u WHERE workspace_id = u.value ->> 0 AND account_id = u.value ->> 1
