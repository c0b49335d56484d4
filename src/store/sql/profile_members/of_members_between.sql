-- The profiles of the members whose account ids are in [$2, $3], by account and profile.
SELECT account_id, profile_id FROM profile_members
WHERE workspace_id = $1 AND account_id >= $2 AND account_id <= $3
ORDER BY account_id, profile_id
