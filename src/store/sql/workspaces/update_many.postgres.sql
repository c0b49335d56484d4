UPDATE workspaces AS w SET pool_size_credits = u.pool_size,
funded_pool_size_credits = u.funded, monthly_pool_funded = u.monthly_funded, monthly_pool_credits = u.monthly,
top_up_pool_credits = u.top_up, low_monthly_pool_credits = u.low_monthly, low_top_up_pool_credits = u.low_top_up,
low_member_remaining_percent = u.low_percent, monthly_cycle = u.cycle, overflow_pool = u.overflow,
overflow_lent_credits = u.lent, low_overflow_units = u.low_overflow, memberships = u.memberships
FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::boolean[], $5::bigint[], $6::bigint[], $7::bigint[],
    $8::bigint[], $9::integer[], $10::bigint[], $11::text[], $12::bigint[], $13::bigint[], $14::bigint[])
    AS u(id, pool_size, funded, monthly_funded, monthly, top_up, low_monthly, low_top_up, low_percent, cycle,
         overflow, lent, low_overflow, memberships)
WHERE w.workspace_id = ANY($1) AND w.workspace_id = u.id
