-- How many holds each of a JSON list of [scope id, scope kind, account] rows has open, in their
-- order.
SELECT (
    SELECT COUNT(*) FROM charges
    WHERE scope_id = k.value ->> 0 AND scope_kind = k.value ->> 1 AND account_id = k.value ->> 2 AND state = 'held'
) FROM jsonb_each($1) AS k
ORDER BY k.key
