//! Member use cases: add, remove, role, allowances (M1–M3), list.

use crate::domain::Tenant;
use serde::{Deserialize, Serialize};

use super::idempotency::fingerprint;
use super::views::{
    MemberView, Page, WorkspaceView, existing_account, existing_member, existing_workspace, member_view,
    profile_ids_of, workspace_view,
};
use super::{DEFAULT_PAGE_SIZE, Ledger, LedgerError, MAX_PAGE_SIZE};
use crate::domain::{
    AccountId, AdminAction, Credits, IdempotencyKey, PoolAccess, PoolReservations, ProfileId, Role, Wallet, Workspace,
    WorkspaceId, authorize,
};
use crate::store::{Lock, Store, StoreTx};

/// Add a member.
#[derive(Debug, Clone, Serialize)]
pub struct AddMember {
    /// Idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Who acts (OWNER or ADMIN).
    pub actor_account_id: AccountId,
    /// The account to add.
    pub account_id: AccountId,
    /// Its role.
    pub role: Role,
}

/// Remove a member.
#[derive(Debug, Clone, Serialize)]
pub struct RemoveMember {
    /// Idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Who acts (OWNER or ADMIN).
    pub actor_account_id: AccountId,
    /// The member to remove.
    pub account_id: AccountId,
}

/// A removed member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRemoved {
    /// The member as it was.
    pub member: MemberView,
    /// Open holds released.
    pub released_reservations: u32,
}

/// Change a member's role.
#[derive(Debug, Clone, Serialize)]
pub struct SetMemberRole {
    /// Idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Who acts (OWNER or ADMIN).
    pub actor_account_id: AccountId,
    /// The member.
    pub account_id: AccountId,
    /// The new role.
    pub role: Role,
}

/// Set a member's allowances.
#[derive(Debug, Clone, Serialize)]
pub struct SetMemberAllowance {
    /// Idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Who acts (OWNER or ADMIN).
    pub actor_account_id: AccountId,
    /// The member.
    pub account_id: AccountId,
    /// New monthly allowance.
    pub monthly_allowance_credits: Credits,
    /// New top-up allowance.
    pub top_up_allowance_credits: Credits,
}

/// A member and its workspace after an allowance change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowanceSet {
    /// The member.
    pub member: MemberView,
    /// The workspace.
    pub workspace: WorkspaceView,
}

impl<S: Store> Ledger<S> {
    /// Adds an existing account to a workspace with zero allowances.
    pub async fn add_member(&self, command: AddMember) -> Result<MemberView, LedgerError> {
        let request = fingerprint("AddMember", &command)?;
        let scope = &Tenant::Workspace(command.workspace_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            let mut workspace =
                self.lock_workspace_as(&mut tx, &command.workspace_id, &command.actor_account_id).await?;
            existing_account(&mut tx, "account_id", &command.account_id, Lock::None).await?;
            let member = workspace.admit(command.account_id.clone(), command.role, self.now_ms())?;
            tx.update_workspace(&workspace).await?;
            if !tx.insert_member(&member).await? {
                return Err(LedgerError::AlreadyExists {
                    field: "account_id",
                    what: "member",
                    id: format!("{} of workspace {}", command.account_id, command.workspace_id),
                });
            }
            // A new membership: no holds, and no profiles (a former one's went with it).
            let view = MemberView { member, open_reservations: 0, profile_ids: Vec::new() };
            self.finish(tx, scope, &command.idempotency_key, view).await
        })
        .await
    }

    /// Removes a member (not the owner); its reservations are freed with it.
    pub async fn remove_member(&self, command: RemoveMember) -> Result<MemberRemoved, LedgerError> {
        let request = fingerprint("RemoveMember", &command)?;
        let scope = &Tenant::Workspace(command.workspace_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            let workspace = self.lock_workspace_as(&mut tx, &command.workspace_id, &command.actor_account_id).await?;
            let member = existing_member(&mut tx, &workspace.id, &command.account_id, Lock::Update).await?;
            member.ensure_not_owner()?;
            // C5b: its open holds go back to the pools before the member (and its reservations) go.
            let mut wallet = Wallet::Workspace { workspace, member, access: PoolAccess::Denied };
            let released_reservations = self.release_holds_of(&mut tx, &mut wallet, &command.idempotency_key).await?;
            let Wallet::Workspace { workspace, member, .. } = wallet else {
                return Err(LedgerError::internal("a member's wallet came back as a personal one"));
            };
            tx.update_workspace(&workspace).await?;
            // The member as it was when removed: its holds released, in the profiles it leaves.
            let profile_ids = profile_ids_of(&mut tx, &member).await?;
            tx.delete_member(&member).await?;
            let member = MemberView { member, open_reservations: 0, profile_ids };
            let result = MemberRemoved { member, released_reservations };
            self.finish(tx, scope, &command.idempotency_key, result).await
        })
        .await
    }

    /// Changes a member's role; REVIEWER and CLIENT lose their allowances (M1).
    pub async fn set_member_role(&self, command: SetMemberRole) -> Result<MemberView, LedgerError> {
        let request = fingerprint("SetMemberRole", &command)?;
        let scope = &Tenant::Workspace(command.workspace_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            let workspace = self.lock_workspace_as(&mut tx, &command.workspace_id, &command.actor_account_id).await?;
            let mut member = existing_member(&mut tx, &workspace.id, &command.account_id, Lock::Update).await?;
            member.set_role(command.role)?;
            tx.update_members(std::slice::from_ref(&member)).await?;
            let view = member_view(&mut tx, member).await?;
            self.finish(tx, scope, &command.idempotency_key, view).await
        })
        .await
    }

    /// M1–M3: sets a member's allowances against what the pools have unallocated.
    pub async fn set_member_allowance(&self, command: SetMemberAllowance) -> Result<AllowanceSet, LedgerError> {
        let request = fingerprint("SetMemberAllowance", &command)?;
        let scope = &Tenant::Workspace(command.workspace_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            // The workspace lock serialises every change to its members' reservations, so the
            // others' totals read below cannot move before commit (M2 under races).
            let workspace = self.lock_workspace_as(&mut tx, &command.workspace_id, &command.actor_account_id).await?;
            let mut member = existing_member(&mut tx, &workspace.id, &command.account_id, Lock::Update).await?;
            let others = tx.allocated_totals(&workspace.id, Some(&member.account_id)).await?;
            member.set_allowances(
                command.monthly_allowance_credits,
                command.top_up_allowance_credits,
                PoolReservations { pool: workspace.monthly_pool, reserved_by_others: others.monthly },
                PoolReservations { pool: workspace.top_up_pool, reserved_by_others: others.top_up },
            )?;
            tx.update_members(std::slice::from_ref(&member)).await?;
            let result = AllowanceSet {
                member: member_view(&mut tx, member).await?,
                workspace: workspace_view(&mut tx, workspace).await?,
            };
            self.finish(tx, scope, &command.idempotency_key, result).await
        })
        .await
    }

    /// Lists members by account id.
    pub async fn list_members(
        &self,
        workspace_id: &WorkspaceId,
        page_size: u32,
        after: Option<&AccountId>,
    ) -> Result<Page<MemberView>, LedgerError> {
        let limit = page_limit(page_size);
        self.retrying(|| async {
            let mut tx = self.store.begin().await?;
            existing_workspace(&mut tx, workspace_id, Lock::None).await?;
            let members = tx.members(workspace_id, after, limit + 1).await?;
            let holds: std::collections::HashMap<AccountId, u32> =
                tx.open_holds_per_member(workspace_id).await?.into_iter().collect();
            let mut profiles: std::collections::HashMap<AccountId, Vec<ProfileId>> = std::collections::HashMap::new();
            if let (Some(first), Some(last)) = (members.first(), members.last()) {
                for (account, profile) in
                    tx.profile_assignments(workspace_id, &first.account_id, &last.account_id).await?
                {
                    profiles.entry(account).or_default().push(profile);
                }
            }
            let views = members
                .into_iter()
                .map(|member| {
                    let open_reservations = holds.get(&member.account_id).copied().unwrap_or(0);
                    let profile_ids = profiles.remove(&member.account_id).unwrap_or_default();
                    MemberView { member, open_reservations, profile_ids }
                })
                .collect();
            Ok(paginate(views, limit, |view| view.member.account_id.to_string()))
        })
        .await
    }

    /// Locks a workspace for a member-management change by `actor` (OWNER or ADMIN, M1).
    pub(super) async fn lock_workspace_as(
        &self,
        tx: &mut S::Tx,
        id: &WorkspaceId,
        actor: &AccountId,
    ) -> Result<Workspace, LedgerError> {
        let workspace = existing_workspace(tx, id, Lock::Update).await?;
        let membership = tx.member(id, actor, Lock::None).await?;
        authorize(actor, membership.as_ref(), AdminAction::ManageMembers)?;
        Ok(workspace)
    }
}

/// The page size to use for a requested one (0 means the default).
pub(super) fn page_limit(page_size: u32) -> u32 {
    if page_size == 0 { DEFAULT_PAGE_SIZE } else { page_size.min(MAX_PAGE_SIZE) }
}

/// Cuts `limit + 1` fetched items to a page and its continuation.
pub(super) fn paginate<T>(mut items: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = items.len() > limit;
    items.truncate(limit);
    let next_after = if more { items.last().map(key) } else { None };
    Page { items, next_after }
}
