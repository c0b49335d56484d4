-- How many holds each of the accounts $3 has open in one scope, in their order, each counted on
-- the open-holds index.
SELECT h.count FROM UNNEST($3::text[]) WITH ORDINALITY AS k(account_id, position) CROSS JOIN LATERAL (
    SELECT COUNT(*) AS count FROM charges
    WHERE scope_id = $1 AND scope_kind = $2 AND account_id = k.account_id AND state = 'held'
) AS h
ORDER BY k.position
