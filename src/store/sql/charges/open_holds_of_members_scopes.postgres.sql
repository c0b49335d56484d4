-- How many holds each (scope id, scope kind, account) has open, for accounts of several scopes (a
-- batch of many workspaces on one Postgres; one scope uses open_holds_of_members.postgres.sql,
-- which Citus routes to its shard), in their order.
SELECT h.count FROM UNNEST($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k(scope_id, scope_kind, account_id, position)
CROSS JOIN LATERAL (
    SELECT COUNT(*) AS count FROM charges
    WHERE scope_id = k.scope_id AND scope_kind = k.scope_kind AND account_id = k.account_id AND state = 'held'
) AS h
ORDER BY k.position
