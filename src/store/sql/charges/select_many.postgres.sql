-- Charges by key (a sorted array: rows are locked in its order), each looked up by its whole
-- primary key. `charge_key = ANY(...)` would leave the plan to statistics: before a table has
-- them, Postgres scans the scope's whole history and filters it (8 ms at 60,000 rows, against
-- 0.06 ms by key).
SELECT c.* FROM UNNEST($3::text[]) AS k(key) CROSS JOIN LATERAL (
    SELECT scope_id, scope_kind, charge_key, account_id, state, monthly_credits, top_up_credits,
        refunded_monthly_credits, refunded_top_up_credits, forfeited_credits, cycle, created_at_ms, expires_at_ms,
        overflow_credits, refunded_overflow_credits, overflow_take, membership
    FROM charges WHERE scope_id = $1 AND scope_kind = $2 AND charge_key = k.key LIMIT 1
) AS c
