INSERT INTO accounts (account_id, monthly_credits, top_up_credits, plan_monthly_credits,
plan_next_monthly_credits, anchor_day_of_month, anchor_hour_utc, anchor_minute_utc, current_period,
period_started_at_ms, monthly_cycle, next_renewal_at_ms, created_at_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (account_id) DO NOTHING
