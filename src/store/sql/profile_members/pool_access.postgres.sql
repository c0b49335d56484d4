-- The pool-access profiles of the members in the array $2: one row per (member, profile), with
-- whether the profile requires consent.
SELECT m.account_id, p.requires_consent
FROM profile_members m JOIN profiles p ON p.workspace_id = m.workspace_id AND p.profile_id = m.profile_id
WHERE m.workspace_id = $1 AND p.pool_access AND m.account_id = ANY($2)
