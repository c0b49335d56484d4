UPDATE members AS m SET role = u.role,
monthly_allowance_credits = u.monthly_allowance, monthly_used_credits = u.monthly_used,
top_up_allowance_credits = u.top_up_allowance, top_up_used_credits = u.top_up_used
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])
    AS u(workspace_id, account_id, role, monthly_allowance, monthly_used, top_up_allowance, top_up_used)
WHERE m.workspace_id = ANY($8) AND m.workspace_id = u.workspace_id AND m.account_id = u.account_id
