SELECT scope_id, scope_kind, charge_key FROM charges
WHERE state = 'held' AND expires_at_ms <= $1 ORDER BY expires_at_ms LIMIT $2
