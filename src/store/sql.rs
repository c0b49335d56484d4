//! SQL statements in the dialect both backends share (`$n` parameters, `ON CONFLICT`,
//! `RETURNING`, `CAST`); a backend adds its own locking clause to the `select_*` statements.

macro_rules! select_account {
    () => {
        "SELECT account_id, monthly_credits, top_up_credits, plan_monthly_credits, plan_next_monthly_credits, \
         anchor_day_of_month, anchor_hour_utc, anchor_minute_utc, current_period, period_started_at_ms, monthly_cycle, \
         next_renewal_at_ms, created_at_ms FROM accounts WHERE account_id = $1"
    };
}
macro_rules! select_workspace {
    () => {
        "SELECT workspace_id, owner_account_id, pool_size_credits, funded_pool_size_credits, monthly_pool_funded, \
         monthly_pool_credits, top_up_pool_credits, monthly_cycle, low_monthly_pool_credits, low_top_up_pool_credits, \
         low_member_remaining_percent, overflow_pool, overflow_lent_credits, low_overflow_units, created_at_ms, \
         memberships FROM workspaces WHERE workspace_id = $1"
    };
}
macro_rules! select_member {
    () => {
        "SELECT workspace_id, account_id, role, monthly_allowance_credits, monthly_used_credits, \
         top_up_allowance_credits, top_up_used_credits, created_at_ms, membership \
         FROM members WHERE workspace_id = $1 AND account_id = $2"
    };
}
pub(crate) use {select_account, select_member, select_workspace};

/// The migrations sqlx recorded as applied.
pub(crate) const APPLIED_MIGRATIONS: &str = "SELECT version FROM _sqlx_migrations WHERE success";

/// What the metrics sampler reports: open holds, and when the oldest unpublished event committed.
pub(crate) const GAUGES: &str = "SELECT (SELECT COUNT(*) FROM charges WHERE state = 'held'), \
     (SELECT MIN(created_at_ms) FROM notifications WHERE position IS NULL)";

pub(crate) const OPEN_HOLDS_OF_MEMBER: &str = "SELECT COUNT(*), CAST(COALESCE(SUM(monthly_credits + top_up_credits + overflow_credits), 0) AS BIGINT) \
     FROM charges WHERE scope_id = $1 AND scope_kind = $2 AND account_id = $3 AND state = 'held'";
/// Open holds of a scope (optionally one member), by member, oldest first, after a cursor.
pub(crate) const LIST_OPEN_HOLDS: &str = "SELECT scope_id, scope_kind, charge_key, account_id, state, monthly_credits, \
     top_up_credits, refunded_monthly_credits, refunded_top_up_credits, forfeited_credits, cycle, created_at_ms, expires_at_ms, \
     overflow_credits, refunded_overflow_credits, overflow_take, membership \
     FROM charges WHERE scope_id = $1 AND scope_kind = $2 AND state = 'held' AND ($3 = '' OR account_id = $3) \
     AND (account_id, created_at_ms, charge_key) > ($4, $5, $6) \
     ORDER BY account_id, created_at_ms, charge_key LIMIT $7";
pub(crate) const EXPIRED_HOLDS: &str = "SELECT scope_id, scope_kind, charge_key FROM charges \
     WHERE state = 'held' AND expires_at_ms <= $1 ORDER BY expires_at_ms LIMIT $2";
pub(crate) const PRUNE_IDEMPOTENCY: &str = "DELETE FROM idempotency_records WHERE (scope_id, scope_kind, idempotency_key) IN ( \
     SELECT scope_id, scope_kind, idempotency_key FROM idempotency_records WHERE created_at_ms < $1 LIMIT $2)";

pub(crate) const CLAIM_IDEMPOTENCY: &str = "INSERT INTO idempotency_records (scope_id, scope_kind, idempotency_key, request, created_at_ms) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
pub(crate) const SELECT_IDEMPOTENCY: &str = "SELECT request, response FROM idempotency_records \
     WHERE scope_id = $1 AND scope_kind = $2 AND idempotency_key = $3";
pub(crate) const RECORD_RESPONSE: &str = "UPDATE idempotency_records SET response = $4 \
     WHERE scope_id = $1 AND scope_kind = $2 AND idempotency_key = $3";

pub(crate) const INSERT_ACCOUNT: &str = "INSERT INTO accounts (account_id, monthly_credits, top_up_credits, plan_monthly_credits, \
     plan_next_monthly_credits, anchor_day_of_month, anchor_hour_utc, anchor_minute_utc, current_period, \
     period_started_at_ms, monthly_cycle, next_renewal_at_ms, created_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
     ON CONFLICT (account_id) DO NOTHING";
pub(crate) const UPDATE_ACCOUNT: &str = "UPDATE accounts SET monthly_credits = $2, top_up_credits = $3, plan_monthly_credits = $4, \
     plan_next_monthly_credits = $5, anchor_day_of_month = $6, anchor_hour_utc = $7, anchor_minute_utc = $8, \
     current_period = $9, period_started_at_ms = $10, monthly_cycle = $11, next_renewal_at_ms = $12 WHERE account_id = $1";
pub(crate) const POOL_SIZES_OWNED: &str = "SELECT CAST(COALESCE(SUM(pool_size_credits), 0) AS BIGINT) FROM workspaces \
     WHERE owner_account_id = $1 AND workspace_id <> $2";

pub(crate) const INSERT_WORKSPACE: &str = "INSERT INTO workspaces (workspace_id, owner_account_id, pool_size_credits, \
     funded_pool_size_credits, monthly_pool_funded, monthly_pool_credits, top_up_pool_credits, monthly_cycle, \
     low_monthly_pool_credits, low_top_up_pool_credits, low_member_remaining_percent, overflow_pool, \
     overflow_lent_credits, low_overflow_units, created_at_ms, memberships) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (workspace_id) DO NOTHING";
pub(crate) const UPDATE_WORKSPACE: &str = "UPDATE workspaces SET pool_size_credits = $2, funded_pool_size_credits = $3, \
     monthly_pool_funded = $4, monthly_pool_credits = $5, top_up_pool_credits = $6, low_monthly_pool_credits = $7, \
     low_top_up_pool_credits = $8, low_member_remaining_percent = $9, monthly_cycle = $10, overflow_pool = $11, \
     overflow_lent_credits = $12, low_overflow_units = $13, memberships = $14 WHERE workspace_id = $1";

pub(crate) const INSERT_MEMBER: &str = "INSERT INTO members (workspace_id, account_id, role, monthly_allowance_credits, \
     monthly_used_credits, top_up_allowance_credits, top_up_used_credits, created_at_ms, membership) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (workspace_id, account_id) DO NOTHING";
pub(crate) const DELETE_MEMBER: &str = "DELETE FROM members WHERE workspace_id = $1 AND account_id = $2";
pub(crate) const LIST_MEMBERS: &str = "SELECT workspace_id, account_id, role, monthly_allowance_credits, monthly_used_credits, \
     top_up_allowance_credits, top_up_used_credits, created_at_ms, membership \
     FROM members WHERE workspace_id = $1 AND account_id > $2 ORDER BY account_id LIMIT $3";
pub(crate) const ALLOCATED_TOTALS: &str = "SELECT \
     CAST(COALESCE(SUM(CASE WHEN monthly_allowance_credits > monthly_used_credits \
         THEN monthly_allowance_credits - monthly_used_credits ELSE 0 END), 0) AS BIGINT), \
     CAST(COALESCE(SUM(CASE WHEN top_up_allowance_credits > top_up_used_credits \
         THEN top_up_allowance_credits - top_up_used_credits ELSE 0 END), 0) AS BIGINT) \
     FROM members WHERE workspace_id = $1 AND account_id <> $2";

/// Every bucket's stored balance beside the sum of its journal entries.
pub(crate) const LEDGER_BALANCES: &str = "WITH movements AS ( \
         SELECT from_bucket AS bucket, from_owner_id AS owner_id, -amount_credits AS delta \
         FROM journal_entries WHERE from_owner_id IS NOT NULL \
         UNION ALL \
         SELECT to_bucket, to_owner_id, amount_credits FROM journal_entries WHERE to_owner_id IS NOT NULL \
     ), journal AS ( \
         SELECT bucket, owner_id, CAST(SUM(delta) AS BIGINT) AS credits FROM movements GROUP BY bucket, owner_id \
     ), recorded AS ( \
         SELECT 'account_monthly' AS bucket, account_id AS owner_id, monthly_credits AS credits FROM accounts \
         UNION ALL SELECT 'account_top_up', account_id, top_up_credits FROM accounts \
         UNION ALL SELECT 'workspace_monthly', workspace_id, monthly_pool_credits FROM workspaces \
         UNION ALL SELECT 'workspace_top_up', workspace_id, top_up_pool_credits FROM workspaces \
         UNION ALL SELECT CASE scope_kind WHEN 'workspace' THEN 'workspace_held' ELSE 'account_held' END, scope_id, \
             CAST(SUM(monthly_credits + top_up_credits + overflow_credits) AS BIGINT) FROM charges WHERE state = 'held' \
             GROUP BY scope_kind, scope_id \
         UNION ALL SELECT 'workspace_overflow', workspace_id, -overflow_lent_credits FROM workspaces \
             WHERE overflow_lent_credits <> 0 \
     ) \
     SELECT COALESCE(r.bucket, j.bucket) AS bucket, COALESCE(r.owner_id, j.owner_id) AS owner_id, \
            CAST(COALESCE(r.credits, 0) AS BIGINT) AS recorded, CAST(COALESCE(j.credits, 0) AS BIGINT) AS journal \
     FROM recorded r FULL OUTER JOIN journal j ON r.bucket = j.bucket AND r.owner_id = j.owner_id \
     ORDER BY 1, 2";
/// Every membership's used counts beside what the charges of that membership still hold: monthly
/// credits of the workspace's current cycle, top-up credits of any cycle.
pub(crate) const MEMBER_USAGE: &str = "WITH drawn AS ( \
         SELECT c.scope_id AS workspace_id, c.account_id, c.membership, \
             SUM(CASE WHEN c.cycle = w.monthly_cycle THEN c.monthly_credits - c.refunded_monthly_credits ELSE 0 END) \
                 AS monthly, \
             SUM(c.top_up_credits - c.refunded_top_up_credits) AS top_up \
         FROM charges c JOIN workspaces w ON w.workspace_id = c.scope_id \
         WHERE c.scope_kind = 'workspace' AND c.state IN ('held', 'captured') \
         GROUP BY c.scope_id, c.account_id, c.membership \
     ) \
     SELECT m.workspace_id || '/' || m.account_id AS owner_id, m.monthly_used_credits, m.top_up_used_credits, \
            CAST(COALESCE(d.monthly, 0) AS BIGINT) AS monthly_drawn, CAST(COALESCE(d.top_up, 0) AS BIGINT) AS top_up_drawn \
     FROM members m LEFT JOIN drawn d \
         ON d.workspace_id = m.workspace_id AND d.account_id = m.account_id AND d.membership = m.membership \
     ORDER BY m.workspace_id, m.account_id";
/// Overflow pools, and the units the charges still hold, for comparing in code (both are JSON).
pub(crate) const OVERFLOW_POOLS: &str =
    "SELECT workspace_id, overflow_pool FROM workspaces WHERE overflow_pool IS NOT NULL ORDER BY workspace_id";
pub(crate) const OVERFLOW_TAKES: &str = "SELECT scope_id, overflow_take FROM charges \
     WHERE scope_kind = 'workspace' AND overflow_take IS NOT NULL AND state IN ('held', 'captured')";
pub(crate) const COUNT_JOURNAL_ENTRIES: &str = "SELECT COUNT(*) FROM journal_entries";

// Batches: one statement per kind of row for all the scopes of a batch (Postgres arrays,
// `UNNEST`). Every lock and update filters by the scope keys (`= ANY`, the batch's scopes, one
// with `MAX_BATCH_SCOPES` of 1), so on Citus it can be pruned to those scopes' shards.
// The inserts count the rows they return, never the command's row count: Citus reports the rows
// an `INSERT … SELECT` selected, not the ones it inserted, and a replay would pass as new.
/// The batch's workspaces, locked in id order (the lock order of every multi-workspace lock).
pub(crate) const LOCK_WORKSPACES: &str = "SELECT workspace_id, owner_account_id, pool_size_credits, \
     funded_pool_size_credits, monthly_pool_funded, monthly_pool_credits, top_up_pool_credits, monthly_cycle, \
     low_monthly_pool_credits, low_top_up_pool_credits, low_member_remaining_percent, overflow_pool, \
     overflow_lent_credits, low_overflow_units, created_at_ms, memberships \
     FROM workspaces WHERE workspace_id = ANY($1) ORDER BY workspace_id FOR UPDATE";
/// Memberships by (workspace, account), locked in key order. The join with the pairs takes each
/// by its primary key; `workspace_id = ANY($1)` tells Citus the shards (one, for a one-scope
/// batch), which it cannot read from a join's condition.
pub(crate) const LOCK_MEMBERS: &str = "SELECT m.workspace_id, m.account_id, m.role, m.monthly_allowance_credits, \
     m.monthly_used_credits, m.top_up_allowance_credits, m.top_up_used_credits, m.created_at_ms, m.membership \
     FROM members AS m JOIN UNNEST($1::text[], $2::text[]) AS k(w, a) ON m.workspace_id = k.w AND m.account_id = k.a \
     WHERE m.workspace_id = ANY($1) ORDER BY m.workspace_id, m.account_id FOR UPDATE OF m";
pub(crate) const UPDATE_WORKSPACES: &str = "UPDATE workspaces AS w SET pool_size_credits = u.pool_size, \
     funded_pool_size_credits = u.funded, monthly_pool_funded = u.monthly_funded, monthly_pool_credits = u.monthly, \
     top_up_pool_credits = u.top_up, low_monthly_pool_credits = u.low_monthly, low_top_up_pool_credits = u.low_top_up, \
     low_member_remaining_percent = u.low_percent, monthly_cycle = u.cycle, overflow_pool = u.overflow, \
     overflow_lent_credits = u.lent, low_overflow_units = u.low_overflow, memberships = u.memberships \
     FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::boolean[], $5::bigint[], $6::bigint[], $7::bigint[], \
         $8::bigint[], $9::integer[], $10::bigint[], $11::text[], $12::bigint[], $13::bigint[], $14::bigint[]) \
         AS u(id, pool_size, funded, monthly_funded, monthly, top_up, low_monthly, low_top_up, low_percent, cycle, \
              overflow, lent, low_overflow, memberships) \
     WHERE w.workspace_id = ANY($1) AND w.workspace_id = u.id";
pub(crate) const INSERT_IDEMPOTENCY_RECORDS: &str = "INSERT INTO idempotency_records \
     (scope_id, scope_kind, idempotency_key, request, response, created_at_ms) \
     SELECT s, t, k, q, r, $6 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
         AS u(s, t, k, q, r) \
     ON CONFLICT DO NOTHING RETURNING idempotency_key";
pub(crate) const UPDATE_MEMBERS: &str = "UPDATE members AS m SET role = u.role, \
     monthly_allowance_credits = u.monthly_allowance, monthly_used_credits = u.monthly_used, \
     top_up_allowance_credits = u.top_up_allowance, top_up_used_credits = u.top_up_used \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[]) \
         AS u(workspace_id, account_id, role, monthly_allowance, monthly_used, top_up_allowance, top_up_used) \
     WHERE m.workspace_id = ANY($8) AND m.workspace_id = u.workspace_id AND m.account_id = u.account_id";
pub(crate) const INSERT_CHARGES: &str = "INSERT INTO charges (scope_id, scope_kind, charge_key, account_id, state, \
     monthly_credits, top_up_credits, refunded_monthly_credits, refunded_top_up_credits, forfeited_credits, cycle, \
     created_at_ms, expires_at_ms, overflow_credits, refunded_overflow_credits, overflow_take, membership) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], \
         $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], \
         $15::bigint[], $16::text[], $17::bigint[]) \
     ON CONFLICT (scope_id, scope_kind, charge_key) DO NOTHING RETURNING charge_key";
/// Takes the same 17 columns as `INSERT_CHARGES`, then the scope keys.
pub(crate) const UPDATE_CHARGES: &str = "UPDATE charges AS c SET state = u.state, monthly_credits = u.monthly, \
     top_up_credits = u.top_up, refunded_monthly_credits = u.refunded_monthly, \
     refunded_top_up_credits = u.refunded_top_up, forfeited_credits = u.forfeited, expires_at_ms = u.expires_at_ms, \
     overflow_credits = u.overflow, refunded_overflow_credits = u.refunded_overflow, overflow_take = u.overflow_take \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], \
         $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], \
         $15::bigint[], $16::text[], $17::bigint[]) \
         AS u(scope_id, scope_kind, charge_key, account_id, state, monthly, top_up, refunded_monthly, refunded_top_up, \
              forfeited, cycle, created_at_ms, expires_at_ms, overflow, refunded_overflow, overflow_take, membership) \
     WHERE c.scope_id = ANY($18) AND c.scope_id = u.scope_id AND c.scope_kind = u.scope_kind \
         AND c.charge_key = u.charge_key";
// The per-table form inserts new rows as multi-row `VALUES`, each row a parameter list, which
// Citus routes to the rows' shard; it pulls an `INSERT … SELECT FROM UNNEST` to the coordinator
// and copies the rows back, which forces two-phase commit even for one shard.
/// `INSERT_CHARGES`'s columns, for a multi-row `VALUES` list.
pub(crate) const INSERT_CHARGES_VALUES: &str = "INSERT INTO charges (scope_id, scope_kind, charge_key, account_id, \
     state, monthly_credits, top_up_credits, refunded_monthly_credits, refunded_top_up_credits, forfeited_credits, \
     cycle, created_at_ms, expires_at_ms, overflow_credits, refunded_overflow_credits, overflow_take, membership) ";
/// `INSERT_JOURNAL_ENTRIES`'s columns, for a multi-row `VALUES` list.
pub(crate) const INSERT_JOURNAL_ENTRIES_VALUES: &str = "INSERT INTO journal_entries (ledger_scope_id, from_bucket, \
     from_owner_id, to_bucket, to_owner_id, amount_credits, cause, reference, member_account_id, created_at_ms, part, \
     overflow_units, overage_units) ";
/// `INSERT_IDEMPOTENCY_RECORDS`'s columns, for a multi-row `VALUES` list.
pub(crate) const INSERT_IDEMPOTENCY_RECORDS_VALUES: &str = "INSERT INTO idempotency_records \
     (scope_id, scope_kind, idempotency_key, request, response, created_at_ms) ";
pub(crate) const INSERT_JOURNAL_ENTRIES: &str = "INSERT INTO journal_entries (ledger_scope_id, from_bucket, from_owner_id, \
     to_bucket, to_owner_id, amount_credits, cause, reference, member_account_id, created_at_ms, part, overflow_units, \
     overage_units) \
     SELECT s, fb, fo, tb, t, a, c, r, m, $10, p, q, o FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
         $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[], $11::text[], $12::bigint[], $13::bigint[]) \
         AS u(s, fb, fo, tb, t, a, c, r, m, p, q, o)";

// Billing cycles.
/// The ids only: the rows are then locked one by one by their key, which a distributed table
/// can do (a `FOR UPDATE` filtered by the owner cannot run on Citus).
pub(crate) const OWNED_WORKSPACE_IDS: &str =
    "SELECT workspace_id FROM workspaces WHERE owner_account_id = $1 ORDER BY workspace_id";
pub(crate) const DUE_RENEWALS: &str = "SELECT account_id FROM accounts WHERE next_renewal_at_ms <= $1 \
     ORDER BY next_renewal_at_ms, account_id LIMIT $2";
pub(crate) const INSERT_NOTIFICATION: &str = "INSERT INTO notifications \
     (account_id, kind, workspace_id, member_account_id, payload, created_at_ms, scope_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

// The notification stream: positions handed out after commit, in one place (see migrations).
macro_rules! select_stream_position {
    () => {
        "SELECT last_position FROM notification_stream WHERE stream_id = 1"
    };
}
pub(crate) use select_stream_position;
pub(crate) const ASSIGN_POSITIONS: &str = "UPDATE notifications SET position = $1 + pending.rank \
     FROM (SELECT scope_id AS pending_scope, sequence AS pending_sequence, \
                  row_number() OVER (ORDER BY sequence) AS rank \
           FROM notifications WHERE position IS NULL) AS pending \
     WHERE notifications.scope_id = pending.pending_scope AND notifications.sequence = pending.pending_sequence";
pub(crate) const ADVANCE_STREAM: &str =
    "UPDATE notification_stream SET last_position = last_position + $1 WHERE stream_id = 1";
pub(crate) const NOTIFICATIONS_AFTER: &str = "SELECT position, kind, account_id, workspace_id, member_account_id, payload, \
     created_at_ms FROM notifications \
     WHERE position > $1 AND ($2 = '' OR account_id = $2 OR member_account_id = $2) \
       AND ($3 = '' OR workspace_id = $3) AND ($4 = '' OR $4 LIKE '%,' || kind || ',%') \
     ORDER BY position LIMIT $5";
pub(crate) const STREAM_BOUNDS: &str = "SELECT (SELECT last_position FROM notification_stream WHERE stream_id = 1), \
     (SELECT MIN(position) FROM notifications WHERE position IS NOT NULL)";
pub(crate) const PRUNE_NOTIFICATIONS: &str =
    "DELETE FROM notifications WHERE position IS NOT NULL AND created_at_ms < $1";

/// Open holds per member of a workspace.
pub(crate) const OPEN_HOLDS_PER_MEMBER: &str = "SELECT account_id, COUNT(*) FROM charges \
     WHERE scope_id = $1 AND scope_kind = 'workspace' AND state = 'held' GROUP BY account_id";

// Product profiles and the overflow pool.
pub(crate) const SELECT_PROFILE: &str = "SELECT workspace_id, profile_id, name, pool_access, notify_on_assign, \
     requires_consent, created_at_ms FROM profiles WHERE workspace_id = $1 AND profile_id = $2";
pub(crate) const LIST_PROFILES: &str = "SELECT workspace_id, profile_id, name, pool_access, notify_on_assign, \
     requires_consent, created_at_ms FROM profiles WHERE workspace_id = $1 AND profile_id > $2 \
     ORDER BY profile_id LIMIT $3";
pub(crate) const PROFILE_MEMBERS: &str = "SELECT account_id FROM profile_members \
     WHERE workspace_id = $1 AND profile_id = $2 ORDER BY account_id";
/// Members of the profiles whose ids are in (`$2`, `$3`], by profile and account.
pub(crate) const PROFILE_MEMBERS_BETWEEN: &str = "SELECT profile_id, account_id FROM profile_members \
     WHERE workspace_id = $1 AND profile_id > $2 AND profile_id <= $3 ORDER BY profile_id, account_id";
pub(crate) const INSERT_PROFILE: &str = "INSERT INTO profiles (workspace_id, profile_id, name, pool_access, \
     notify_on_assign, requires_consent, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (workspace_id, profile_id) DO NOTHING";
pub(crate) const UPDATE_PROFILE: &str = "UPDATE profiles SET name = $3, pool_access = $4, notify_on_assign = $5, \
     requires_consent = $6 WHERE workspace_id = $1 AND profile_id = $2";
pub(crate) const DELETE_PROFILE_MEMBERS: &str =
    "DELETE FROM profile_members WHERE workspace_id = $1 AND profile_id = $2";
pub(crate) const DELETE_PROFILE: &str = "DELETE FROM profiles WHERE workspace_id = $1 AND profile_id = $2";
pub(crate) const INSERT_PROFILE_MEMBER: &str = "INSERT INTO profile_members (workspace_id, profile_id, account_id) \
     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
pub(crate) const DELETE_PROFILE_MEMBER: &str = "DELETE FROM profile_members \
     WHERE workspace_id = $1 AND profile_id = $2 AND account_id = $3";
pub(crate) const INSERT_OVERFLOW_PERIOD: &str = "INSERT INTO overflow_periods (workspace_id, cycle, period, quota_units, \
     used_units, overage_units, started_at_ms, ended_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (workspace_id, cycle) DO NOTHING";
/// The pool-access profiles of the members in `$2`: one row per (member, profile), with whether
/// the profile requires consent. `$2` is the backend's list form.
macro_rules! pool_access_of {
    ($list:literal) => {
        concat!(
            "SELECT m.account_id, p.requires_consent FROM profile_members m JOIN profiles p \
             ON p.workspace_id = m.workspace_id AND p.profile_id = m.profile_id \
             WHERE m.workspace_id = $1 AND p.pool_access AND m.account_id ",
            $list
        )
    };
}
pub(crate) use pool_access_of;

// Reports: statements over the journal of one scope.
pub(crate) const JOURNAL_ENTRIES: &str = "SELECT entry_id, from_bucket, from_owner_id, to_bucket, to_owner_id, \
     amount_credits, cause, reference, member_account_id, created_at_ms, part, overflow_units, overage_units \
     FROM journal_entries WHERE ledger_scope_id = $1 AND entry_id > $2 \
     AND ($3 = '' OR member_account_id = $3) AND ($4 = '' OR cause = $4) \
     AND created_at_ms >= $5 AND created_at_ms < $6 ORDER BY entry_id LIMIT $7";
/// Net consumption per member and link: into `consumed` counts, out of it (refunds, forfeits)
/// takes back; units leaving the overflow pool count, units returning to it take back.
pub(crate) const USAGE_TOTALS: &str = "SELECT member_account_id, part, \
     CAST(COALESCE(SUM(CASE WHEN to_bucket = 'consumed' THEN amount_credits \
         WHEN from_bucket = 'consumed' THEN -amount_credits ELSE 0 END), 0) AS BIGINT) AS consumed_credits, \
     CAST(COALESCE(SUM(CASE WHEN from_bucket = 'workspace_overflow' THEN overflow_units \
         WHEN to_bucket = 'workspace_overflow' THEN -overflow_units ELSE 0 END), 0) AS BIGINT) AS overflow_units, \
     CAST(COALESCE(SUM(CASE WHEN from_bucket = 'workspace_overflow' THEN overage_units \
         WHEN to_bucket = 'workspace_overflow' THEN -overage_units ELSE 0 END), 0) AS BIGINT) AS overage_units \
     FROM journal_entries WHERE ledger_scope_id = $1 AND created_at_ms >= $2 AND created_at_ms < $3 \
     AND part IS NOT NULL AND member_account_id IS NOT NULL \
     GROUP BY member_account_id, part ORDER BY member_account_id, part";
pub(crate) const CLOSED_OVERFLOW_PERIOD: &str = "SELECT started_at_ms, ended_at_ms FROM overflow_periods \
     WHERE workspace_id = $1 AND period = $2 ORDER BY cycle DESC LIMIT 1";
