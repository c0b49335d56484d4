-- Reads the rows of `workspace_row` (sqlite.rs), one per workspace.
UPDATE workspaces SET pool_size_credits = u.value ->> 1, funded_pool_size_credits = u.value ->> 2,
monthly_pool_funded = u.value ->> 3, monthly_pool_credits = u.value ->> 4, top_up_pool_credits = u.value ->> 5,
low_monthly_pool_credits = u.value ->> 6, low_top_up_pool_credits = u.value ->> 7,
low_member_remaining_percent = u.value ->> 8, monthly_cycle = u.value ->> 9, overflow_pool = u.value ->> 10,
overflow_lent_credits = u.value ->> 11, low_overflow_units = u.value ->> 12, memberships = u.value ->> 13
FROM jsonb_each($1) AS u WHERE workspace_id = u.value ->> 0
