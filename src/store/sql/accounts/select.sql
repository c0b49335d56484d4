SELECT account_id, monthly_credits, top_up_credits, plan_monthly_credits, plan_next_monthly_credits,
    anchor_day_of_month, anchor_hour_utc, anchor_minute_utc, current_period, period_started_at_ms, monthly_cycle,
    next_renewal_at_ms, created_at_ms
FROM accounts WHERE account_id = $1
