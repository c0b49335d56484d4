UPDATE accounts SET monthly_credits = $2, top_up_credits = $3, plan_monthly_credits = $4,
plan_next_monthly_credits = $5, anchor_day_of_month = $6, anchor_hour_utc = $7, anchor_minute_utc = $8,
current_period = $9, period_started_at_ms = $10, monthly_cycle = $11, next_renewal_at_ms = $12 WHERE account_id = $1
