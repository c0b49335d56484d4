//! What both stores share: the `StoreTx` methods whose SQL is the same in both dialects, written
//! once and expanded into each implementation with its own locking statements.

use serde_json::Value;

use super::{Lock, StoreError};

/// A committed idempotency record's request and response, parsed.
pub(crate) fn parse_record(key: &str, request: &str, response: Option<&str>) -> Result<(Value, Value), StoreError> {
    let parse = |text: &str| {
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("idempotency record {key}: {e}")))
    };
    let response = response.ok_or_else(|| StoreError::Corrupt(format!("idempotency record {key} has no response")))?;
    Ok((parse(request)?, parse(response)?))
}

/// The plain or the locking form of a read.
pub(crate) fn pick(lock: Lock, plain: &'static str, locking: &'static str) -> &'static str {
    match lock {
        Lock::None => plain,
        Lock::Update => locking,
    }
}

/// Expands the shared `StoreTx` methods inside an `impl StoreTx for …` whose `self.tx` is a
/// sqlx transaction; each `$lock_*` is the backend's locking form of the matching select.
macro_rules! shared_tx_methods {
    (
        lock_account: $lock_account:expr,
        lock_workspace: $lock_workspace:expr,
        lock_member: $lock_member:expr $(,)?
    ) => {
        async fn claim_idempotency(
            &mut self,
            scope: &Tenant,
            key: &IdempotencyKey,
            request: &Value,
            now_ms: i64,
        ) -> Result<Claim, StoreError> {
            let (scope_id, scope_kind) = $crate::store::idempotency_parts(scope);
            let claimed = sqlx::query(sql::CLAIM_IDEMPOTENCY)
                .bind(scope_id)
                .bind(scope_kind)
                .bind(key.as_str())
                .bind(request.to_string())
                .bind(now_ms)
                .execute(&mut *self.tx)
                .await?
                .rows_affected()
                == 1;
            if claimed {
                return Ok(Claim::Claimed);
            }
            let row = sqlx::query(sql::SELECT_IDEMPOTENCY)
                .bind(scope_id)
                .bind(scope_kind)
                .bind(key.as_str())
                .fetch_one(&mut *self.tx)
                .await?;
            let (request, response) = $crate::store::common::parse_record(
                key.as_str(),
                &row.try_get::<String, _>("request")?,
                row.try_get::<Option<String>, _>("response")?.as_deref(),
            )?;
            Ok(Claim::Used { request, response })
        }

        async fn record_response(
            &mut self,
            scope: &Tenant,
            key: &IdempotencyKey,
            response: &Value,
        ) -> Result<(), StoreError> {
            let (scope_id, scope_kind) = $crate::store::idempotency_parts(scope);
            sqlx::query(sql::RECORD_RESPONSE)
                .bind(scope_id)
                .bind(scope_kind)
                .bind(key.as_str())
                .bind(response.to_string())
                .execute(&mut *self.tx)
                .await?;
            Ok(())
        }

        async fn account(&mut self, id: &AccountId, lock: Lock) -> Result<Option<Account>, StoreError> {
            let statement = $crate::store::common::pick(lock, $crate::store::sql::select_account!(), $lock_account);
            let row: Option<AccountRecord> =
                sqlx::query_as(statement).bind(id.as_str()).fetch_optional(&mut *self.tx).await?;
            row.map(Account::try_from).transpose()
        }

        async fn insert_account(&mut self, account: &Account) -> Result<bool, StoreError> {
            let r = AccountRecord::from(account);
            let inserted = sqlx::query(sql::INSERT_ACCOUNT)
                .bind(r.account_id)
                .bind(r.monthly_credits)
                .bind(r.top_up_credits)
                .bind(r.plan_monthly_credits)
                .bind(r.plan_next_monthly_credits)
                .bind(r.anchor_day_of_month)
                .bind(r.anchor_hour_utc)
                .bind(r.anchor_minute_utc)
                .bind(r.current_period)
                .bind(r.period_started_at_ms)
                .bind(r.monthly_cycle)
                .bind(r.next_renewal_at_ms)
                .bind(r.created_at_ms)
                .execute(&mut *self.tx)
                .await?;
            Ok(inserted.rows_affected() == 1)
        }

        async fn update_account(&mut self, account: &Account) -> Result<(), StoreError> {
            let r = AccountRecord::from(account);
            sqlx::query(sql::UPDATE_ACCOUNT)
                .bind(r.account_id)
                .bind(r.monthly_credits)
                .bind(r.top_up_credits)
                .bind(r.plan_monthly_credits)
                .bind(r.plan_next_monthly_credits)
                .bind(r.anchor_day_of_month)
                .bind(r.anchor_hour_utc)
                .bind(r.anchor_minute_utc)
                .bind(r.current_period)
                .bind(r.period_started_at_ms)
                .bind(r.monthly_cycle)
                .bind(r.next_renewal_at_ms)
                .execute(&mut *self.tx)
                .await?;
            Ok(())
        }

        async fn pool_sizes_owned(
            &mut self,
            owner: &AccountId,
            except: Option<&WorkspaceId>,
        ) -> Result<Credits, StoreError> {
            let total: i64 = sqlx::query_scalar(sql::POOL_SIZES_OWNED)
                .bind(owner.as_str())
                .bind(except.map_or("", WorkspaceId::as_str))
                .fetch_one(&mut *self.tx)
                .await?;
            Credits::new(total).ok_or_else(|| StoreError::Corrupt(format!("pool sizes of {owner} sum to {total}")))
        }

        async fn workspace(&mut self, id: &WorkspaceId, lock: Lock) -> Result<Option<Workspace>, StoreError> {
            let statement = $crate::store::common::pick(lock, $crate::store::sql::select_workspace!(), $lock_workspace);
            let row: Option<WorkspaceRecord> =
                sqlx::query_as(statement).bind(id.as_str()).fetch_optional(&mut *self.tx).await?;
            row.map(Workspace::try_from).transpose()
        }

        async fn insert_workspace(&mut self, workspace: &Workspace) -> Result<bool, StoreError> {
            let r = WorkspaceRecord::from(workspace);
            let inserted = sqlx::query(sql::INSERT_WORKSPACE)
                .bind(r.workspace_id)
                .bind(r.owner_account_id)
                .bind(r.pool_size_credits)
                .bind(r.funded_pool_size_credits)
                .bind(r.monthly_pool_funded)
                .bind(r.monthly_pool_credits)
                .bind(r.top_up_pool_credits)
                .bind(r.monthly_cycle)
                .bind(r.low_monthly_pool_credits)
                .bind(r.low_top_up_pool_credits)
                .bind(r.low_member_remaining_percent)
                .bind(r.overflow_pool)
                .bind(r.overflow_lent_credits)
                .bind(r.low_overflow_units)
                .bind(r.created_at_ms)
                .bind(r.memberships)
                .execute(&mut *self.tx)
                .await?;
            Ok(inserted.rows_affected() == 1)
        }

        async fn update_workspace(&mut self, workspace: &Workspace) -> Result<(), StoreError> {
            let r = WorkspaceRecord::from(workspace);
            sqlx::query(sql::UPDATE_WORKSPACE)
                .bind(r.workspace_id)
                .bind(r.pool_size_credits)
                .bind(r.funded_pool_size_credits)
                .bind(r.monthly_pool_funded)
                .bind(r.monthly_pool_credits)
                .bind(r.top_up_pool_credits)
                .bind(r.low_monthly_pool_credits)
                .bind(r.low_top_up_pool_credits)
                .bind(r.low_member_remaining_percent)
                .bind(r.monthly_cycle)
                .bind(r.overflow_pool)
                .bind(r.overflow_lent_credits)
                .bind(r.low_overflow_units)
                .bind(r.memberships)
                .execute(&mut *self.tx)
                .await?;
            Ok(())
        }

        async fn lock_owned_workspaces(&mut self, owner: &AccountId) -> Result<Vec<Workspace>, StoreError> {
            // The caller holds the owner's account lock, which creating a workspace takes too, so
            // the ids cannot change before the rows are locked.
            let ids: Vec<String> =
                sqlx::query_scalar(sql::OWNED_WORKSPACE_IDS).bind(owner.as_str()).fetch_all(&mut *self.tx).await?;
            let mut workspaces = Vec::with_capacity(ids.len());
            for id in ids {
                let id = WorkspaceId::parse(id).map_err(|e| StoreError::Corrupt(format!("workspace id: {e}")))?;
                match self.workspace(&id, Lock::Update).await? {
                    Some(workspace) => workspaces.push(workspace),
                    None => return Err(StoreError::Corrupt(format!("workspace {id} vanished under its owner's lock"))),
                }
            }
            Ok(workspaces)
        }

        async fn due_renewals(&mut self, now_ms: i64, limit: u32) -> Result<Vec<AccountId>, StoreError> {
            let ids: Vec<String> = sqlx::query_scalar(sql::DUE_RENEWALS)
                .bind(now_ms)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await?;
            ids.into_iter()
                .map(|id| AccountId::parse(id).map_err(|e| StoreError::Corrupt(format!("due account id: {e}"))))
                .collect()
        }

        async fn insert_notifications(
            &mut self,
            notifications: &[Notification],
            now_ms: i64,
        ) -> Result<(), StoreError> {
            for notification in notifications {
                let payload = serde_json::to_string(&notification.payload)
                    .map_err(|e| StoreError::Corrupt(format!("notification payload: {e}")))?;
                sqlx::query(sql::INSERT_NOTIFICATION)
                    .bind(notification.account_id.as_str())
                    .bind(notification.kind.as_str())
                    .bind(notification.workspace_id.as_ref().map(WorkspaceId::as_str))
                    .bind(notification.member_account_id.as_ref().map(AccountId::as_str))
                    .bind(payload)
                    .bind(now_ms)
                    .bind(notification.scope_id())
                    .execute(&mut *self.tx)
                    .await?;
            }
            if !notifications.is_empty() {
                self.wake_publishers().await?;
            }
            Ok(())
        }

        async fn member(
            &mut self,
            workspace: &WorkspaceId,
            account: &AccountId,
            lock: Lock,
        ) -> Result<Option<Member>, StoreError> {
            let statement = $crate::store::common::pick(lock, $crate::store::sql::select_member!(), $lock_member);
            let row: Option<MemberRecord> = sqlx::query_as(statement)
                .bind(workspace.as_str())
                .bind(account.as_str())
                .fetch_optional(&mut *self.tx)
                .await?;
            row.map(Member::try_from).transpose()
        }

        async fn insert_member(&mut self, member: &Member) -> Result<bool, StoreError> {
            let r = MemberRecord::from(member);
            let inserted = sqlx::query(sql::INSERT_MEMBER)
                .bind(r.workspace_id)
                .bind(r.account_id)
                .bind(r.role)
                .bind(r.monthly_allowance_credits)
                .bind(r.monthly_used_credits)
                .bind(r.top_up_allowance_credits)
                .bind(r.top_up_used_credits)
                .bind(r.created_at_ms)
                .bind(r.membership)
                .execute(&mut *self.tx)
                .await?;
            Ok(inserted.rows_affected() == 1)
        }

        async fn delete_member(&mut self, member: &Member) -> Result<(), StoreError> {
            sqlx::query(sql::DELETE_MEMBER)
                .bind(member.workspace_id.as_str())
                .bind(member.account_id.as_str())
                .execute(&mut *self.tx)
                .await?;
            Ok(())
        }

        async fn members(
            &mut self,
            workspace: &WorkspaceId,
            after: Option<&AccountId>,
            limit: u32,
        ) -> Result<Vec<Member>, StoreError> {
            let rows: Vec<MemberRecord> = sqlx::query_as(sql::LIST_MEMBERS)
                .bind(workspace.as_str())
                .bind(after.map_or("", AccountId::as_str))
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await?;
            rows.into_iter().map(Member::try_from).collect()
        }

        async fn allocated_totals(
            &mut self,
            workspace: &WorkspaceId,
            except: Option<&AccountId>,
        ) -> Result<$crate::domain::Split, StoreError> {
            let (monthly, top_up): (i64, i64) = sqlx::query_as(sql::ALLOCATED_TOTALS)
                .bind(workspace.as_str())
                .bind(except.map_or("", AccountId::as_str))
                .fetch_one(&mut *self.tx)
                .await?;
            let corrupt = || StoreError::Corrupt(format!("allocations of {workspace} are negative"));
            Ok($crate::domain::Split::of(
                Credits::new(monthly).ok_or_else(corrupt)?,
                Credits::new(top_up).ok_or_else(corrupt)?,
            ))
        }

        async fn profile(
            &mut self,
            workspace: &WorkspaceId,
            id: &$crate::domain::ProfileId,
        ) -> Result<Option<$crate::domain::Profile>, StoreError> {
            let row: Option<$crate::store::records::ProfileRecord> = sqlx::query_as(sql::SELECT_PROFILE)
                .bind(workspace.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut *self.tx)
                .await?;
            let Some(row) = row else { return Ok(None) };
            let members: Vec<String> = sqlx::query_scalar(sql::PROFILE_MEMBERS)
                .bind(workspace.as_str())
                .bind(id.as_str())
                .fetch_all(&mut *self.tx)
                .await?;
            row.with_members(members).map(Some)
        }

        async fn profiles(
            &mut self,
            workspace: &WorkspaceId,
            after: Option<&$crate::domain::ProfileId>,
            limit: u32,
        ) -> Result<Vec<$crate::domain::Profile>, StoreError> {
            let after = after.map_or("", $crate::domain::ProfileId::as_str);
            let rows: Vec<$crate::store::records::ProfileRecord> = sqlx::query_as(sql::LIST_PROFILES)
                .bind(workspace.as_str())
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await?;
            let Some(last) = rows.last().map(|row| row.profile_id.clone()) else { return Ok(Vec::new()) };
            let pairs: Vec<(String, String)> = sqlx::query_as(sql::PROFILE_MEMBERS_BETWEEN)
                .bind(workspace.as_str())
                .bind(after)
                .bind(last)
                .fetch_all(&mut *self.tx)
                .await?;
            let mut members: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
            for (profile, account) in pairs {
                members.entry(profile).or_default().push(account);
            }
            rows.into_iter()
                .map(|row| {
                    let of = members.remove(&row.profile_id).unwrap_or_default();
                    row.with_members(of)
                })
                .collect()
        }

        async fn insert_profile(&mut self, profile: &$crate::domain::Profile) -> Result<bool, StoreError> {
            let inserted = sqlx::query(sql::INSERT_PROFILE)
                .bind(profile.workspace_id.as_str())
                .bind(profile.id.as_str())
                .bind(profile.name.as_str())
                .bind(profile.pool_access)
                .bind(profile.notify_on_assign)
                .bind(profile.requires_consent)
                .bind(profile.created_at_ms)
                .execute(&mut *self.tx)
                .await?;
            Ok(inserted.rows_affected() == 1)
        }

        async fn update_profile(&mut self, profile: &$crate::domain::Profile) -> Result<(), StoreError> {
            sqlx::query(sql::UPDATE_PROFILE)
                .bind(profile.workspace_id.as_str())
                .bind(profile.id.as_str())
                .bind(profile.name.as_str())
                .bind(profile.pool_access)
                .bind(profile.notify_on_assign)
                .bind(profile.requires_consent)
                .execute(&mut *self.tx)
                .await?;
            Ok(())
        }

        async fn delete_profile(&mut self, profile: &$crate::domain::Profile) -> Result<(), StoreError> {
            for statement in [sql::DELETE_PROFILE_MEMBERS, sql::DELETE_PROFILE] {
                sqlx::query(statement)
                    .bind(profile.workspace_id.as_str())
                    .bind(profile.id.as_str())
                    .execute(&mut *self.tx)
                    .await?;
            }
            Ok(())
        }

        async fn change_profile_members(
            &mut self,
            profile: &$crate::domain::Profile,
            added: &[AccountId],
            removed: &[AccountId],
        ) -> Result<(), StoreError> {
            let changes = added
                .iter()
                .map(|account| (sql::INSERT_PROFILE_MEMBER, account))
                .chain(removed.iter().map(|account| (sql::DELETE_PROFILE_MEMBER, account)));
            for (statement, account) in changes {
                sqlx::query(statement)
                    .bind(profile.workspace_id.as_str())
                    .bind(profile.id.as_str())
                    .bind(account.as_str())
                    .execute(&mut *self.tx)
                    .await?;
            }
            Ok(())
        }

        async fn insert_overflow_period(
            &mut self,
            workspace: &WorkspaceId,
            closed: &$crate::domain::OverflowPool,
            ended_at_ms: i64,
        ) -> Result<(), StoreError> {
            sqlx::query(sql::INSERT_OVERFLOW_PERIOD)
                .bind(workspace.as_str())
                .bind(closed.cycle)
                .bind(closed.period.as_str())
                .bind(closed.quota_units)
                .bind(closed.quota_used_units.saturating_add(closed.overage_units))
                .bind(closed.overage_units)
                .bind(closed.period_started_at_ms)
                .bind(ended_at_ms)
                .execute(&mut *self.tx)
                .await?;
            Ok(())
        }

        async fn journal_entries(
            &mut self,
            scope_id: &str,
            filter: &$crate::store::JournalFilter,
            after: i64,
            limit: u32,
        ) -> Result<Vec<$crate::store::JournalRow>, StoreError> {
            Ok(sqlx::query_as(sql::JOURNAL_ENTRIES)
                .bind(scope_id)
                .bind(after)
                .bind(filter.member.as_ref().map_or("", AccountId::as_str))
                .bind(filter.cause.map_or("", $crate::domain::Cause::as_str))
                .bind(filter.from_ms)
                .bind(filter.to_ms)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await?)
        }

        async fn usage_totals(
            &mut self,
            workspace: &WorkspaceId,
            from_ms: i64,
            to_ms: i64,
        ) -> Result<Vec<$crate::store::UsageRow>, StoreError> {
            Ok(sqlx::query_as(sql::USAGE_TOTALS)
                .bind(workspace.as_str())
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all(&mut *self.tx)
                .await?)
        }

        async fn closed_overflow_period(
            &mut self,
            workspace: &WorkspaceId,
            period: &str,
        ) -> Result<Option<(i64, i64)>, StoreError> {
            Ok(sqlx::query_as(sql::CLOSED_OVERFLOW_PERIOD)
                .bind(workspace.as_str())
                .bind(period)
                .fetch_optional(&mut *self.tx)
                .await?)
        }

        async fn open_holds_of(&mut self, scope: &Tenant, account: &AccountId) -> Result<OpenHolds, StoreError> {
            let (count, held): (i64, i64) = sqlx::query_as(sql::OPEN_HOLDS_OF_MEMBER)
                .bind(scope.id())
                .bind(scope_kind(scope))
                .bind(account.as_str())
                .fetch_one(&mut *self.tx)
                .await?;
            Ok(OpenHolds {
                count: u32::try_from(count).map_err(|_| StoreError::Corrupt(format!("{count} open holds")))?,
                held: Credits::new(held).ok_or_else(|| StoreError::Corrupt(format!("open holds hold {held}")))?,
            })
        }

        async fn open_holds(
            &mut self,
            scope: &Tenant,
            account: Option<&AccountId>,
            after: Option<&HoldCursor>,
            limit: u32,
        ) -> Result<Vec<Charge>, StoreError> {
            let rows: Vec<ChargeRecord> = sqlx::query_as(sql::LIST_OPEN_HOLDS)
                .bind(scope.id())
                .bind(scope_kind(scope))
                .bind(account.map_or("", AccountId::as_str))
                .bind(after.map_or("", |cursor| cursor.account_id.as_str()))
                .bind(after.map_or(i64::MIN, |cursor| cursor.created_at_ms))
                .bind(after.map_or("", |cursor| cursor.key.as_str()))
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await?;
            rows.into_iter().map(Charge::try_from).collect()
        }

        async fn expired_holds(&mut self, now_ms: i64, limit: u32) -> Result<Vec<(Tenant, ChargeKey)>, StoreError> {
            let rows: Vec<(String, String, String)> =
                sqlx::query_as(sql::EXPIRED_HOLDS).bind(now_ms).bind(i64::from(limit)).fetch_all(&mut *self.tx).await?;
            rows.into_iter()
                .map(|(scope_id, kind, key)| {
                    let corrupt =
                        |e: crate::domain::IdError| StoreError::Corrupt(format!("expired hold {scope_id}/{key}: {e}"));
                    let scope = $crate::store::records::charge_tenant(&kind, scope_id.clone())?;
                    Ok((scope, ChargeKey::parse(key.clone()).map_err(corrupt)?))
                })
                .collect()
        }

        async fn prune_idempotency(&mut self, before_ms: i64, limit: u32) -> Result<u64, StoreError> {
            let deleted = sqlx::query(sql::PRUNE_IDEMPOTENCY)
                .bind(before_ms)
                .bind(i64::from(limit))
                .execute(&mut *self.tx)
                .await?;
            Ok(deleted.rows_affected())
        }

        async fn commit(self) -> Result<(), StoreError> {
            self.tx.commit().await?;
            Ok(())
        }

        async fn open_holds_per_member(
            &mut self,
            workspace: &WorkspaceId,
        ) -> Result<Vec<(AccountId, u32)>, StoreError> {
            let rows: Vec<(String, i64)> = sqlx::query_as($crate::store::sql::OPEN_HOLDS_PER_MEMBER)
                .bind(workspace.as_str())
                .fetch_all(&mut *self.tx)
                .await?;
            rows.into_iter()
                .map(|(account, count)| {
                    let account =
                        AccountId::parse(account).map_err(|e| StoreError::Corrupt(format!("holder id: {e}")))?;
                    let count = u32::try_from(count).map_err(|_| StoreError::Corrupt(format!("{count} open holds")))?;
                    Ok((account, count))
                })
                .collect()
        }

        async fn assign_positions(&mut self, last: i64) -> Result<u64, StoreError> {
            let assigned = sqlx::query($crate::store::sql::ASSIGN_POSITIONS).bind(last).execute(&mut *self.tx).await?;
            Ok(assigned.rows_affected())
        }

        async fn notifications_after(
            &mut self,
            position: i64,
            filter: &$crate::store::NotificationFilter,
            limit: u32,
        ) -> Result<Vec<$crate::store::PublishedNotification>, StoreError> {
            let kinds = if filter.kinds.is_empty() { String::new() } else { format!(",{},", filter.kinds.join(",")) };
            let rows: Vec<$crate::store::records::NotificationRecord> =
                sqlx::query_as($crate::store::sql::NOTIFICATIONS_AFTER)
                    .bind(position)
                    .bind(filter.account_id.as_str())
                    .bind(filter.workspace_id.as_str())
                    .bind(kinds)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.tx)
                    .await?;
            rows.into_iter().map($crate::store::PublishedNotification::try_from).collect()
        }

        async fn stream_bounds(&mut self) -> Result<(i64, Option<i64>), StoreError> {
            Ok(sqlx::query_as($crate::store::sql::STREAM_BOUNDS).fetch_one(&mut *self.tx).await?)
        }

        async fn prune_notifications(&mut self, before_ms: i64) -> Result<u64, StoreError> {
            let deleted =
                sqlx::query($crate::store::sql::PRUNE_NOTIFICATIONS).bind(before_ms).execute(&mut *self.tx).await?;
            Ok(deleted.rows_affected())
        }
    };
}
pub(crate) use shared_tx_methods;

/// L1 on an open read transaction `$tx`: every bucket's stored balance beside its journal.
macro_rules! check_ledger {
    ($tx:ident) => {{
        use futures_util::TryStreamExt as _;
        use sqlx::Row as _;
        let mut check = $crate::store::LedgerCheck::default();
        {
            let mut rows = sqlx::query($crate::store::sql::LEDGER_BALANCES).fetch(&mut *$tx);
            while let Some(row) = rows.try_next().await? {
                let (bucket, owner_id): (String, String) = (row.try_get("bucket")?, row.try_get("owner_id")?);
                check.compare(bucket, owner_id, row.try_get("recorded")?, row.try_get("journal")?);
            }
        }
        {
            let mut rows = sqlx::query($crate::store::sql::MEMBER_USAGE).fetch(&mut *$tx);
            while let Some(row) = rows.try_next().await? {
                let owner_id: String = row.try_get("owner_id")?;
                for (bucket, recorded, drawn) in [
                    ("member_monthly_used", "monthly_used_credits", "monthly_drawn"),
                    ("member_top_up_used", "top_up_used_credits", "top_up_drawn"),
                ] {
                    check.compare(bucket, owner_id.as_str(), row.try_get(recorded)?, row.try_get(drawn)?);
                }
            }
        }
        let pools: Vec<(String, String)> =
            sqlx::query_as($crate::store::sql::OVERFLOW_POOLS).fetch_all(&mut *$tx).await?;
        let takes: Vec<(String, String)> =
            sqlx::query_as($crate::store::sql::OVERFLOW_TAKES).fetch_all(&mut *$tx).await?;
        $crate::store::common::compare_overflow_units(&mut check, &pools, &takes)?;
        check.entries_checked =
            sqlx::query_scalar($crate::store::sql::COUNT_JOURNAL_ENTRIES).fetch_one(&mut *$tx).await?;
        check
    }};
}
pub(crate) use check_ledger;

/// Compares each overflow pool's used units (quota and overage) of its current contract period
/// with what the charges of that period still hold.
pub(crate) fn compare_overflow_units(
    check: &mut super::LedgerCheck,
    pools: &[(String, String)],
    takes: &[(String, String)],
) -> Result<(), StoreError> {
    let mut held: std::collections::HashMap<(&str, i64), crate::domain::OverflowUnits> = Default::default();
    for (workspace, take) in takes {
        let take: crate::domain::OverflowTake = super::records::json("overflow_take", take)?;
        let units = held.entry((workspace.as_str(), take.cycle)).or_default();
        *units = units.plus(take.units);
    }
    for (workspace, pool) in pools {
        let pool: crate::domain::OverflowPool = super::records::json("overflow_pool", pool)?;
        let units = held.get(&(workspace.as_str(), pool.cycle)).copied().unwrap_or_default();
        for (bucket, recorded, journal) in [
            ("overflow_quota_used_units", pool.quota_used_units, units.quota),
            ("overflow_overage_units", pool.overage_units, units.overage),
        ] {
            check.compare(bucket, workspace.as_str(), recorded, journal);
        }
    }
    Ok(())
}
