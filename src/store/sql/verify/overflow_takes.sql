SELECT scope_id, overflow_take FROM charges
WHERE scope_kind = 'workspace' AND overflow_take IS NOT NULL AND state IN ('held', 'captured')
