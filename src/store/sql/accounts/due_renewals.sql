SELECT account_id FROM accounts WHERE next_renewal_at_ms <= $1
ORDER BY next_renewal_at_ms, account_id LIMIT $2
