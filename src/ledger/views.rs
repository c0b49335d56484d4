//! What use cases return: domain state plus the figures derived from it for display.

use serde::{Deserialize, Serialize};

use super::LedgerError;
use crate::domain::{Account, AccountId, Credits, Member, PoolAccess, ProfileId, Workspace, WorkspaceId};
use crate::store::{Lock, StoreTx};

/// An account with the sum of its workspaces' pool sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// The account.
    pub account: Account,
    /// Sum of pool sizes over the workspaces it owns.
    pub owned_pool_size: Credits,
}

/// A workspace with its members' reservations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceView {
    /// The workspace.
    pub workspace: Workspace,
    /// Members' remaining monthly allowances.
    pub monthly_reserved: Credits,
    /// Members' remaining top-up allowances.
    pub top_up_reserved: Credits,
}

/// A member as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// The membership.
    pub member: Member,
    /// Its open holds.
    pub open_reservations: u32,
    /// The profiles it is assigned to, by id (absent from answers stored before it was kept).
    #[serde(default)]
    pub profile_ids: Vec<ProfileId>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next_after: Option<String>,
}

pub(super) async fn account_view(tx: &mut impl StoreTx, account: Account) -> Result<AccountView, LedgerError> {
    let owned_pool_size = tx.pool_sizes_owned(&account.id, None).await?;
    Ok(AccountView { account, owned_pool_size })
}

pub(super) async fn workspace_view(tx: &mut impl StoreTx, workspace: Workspace) -> Result<WorkspaceView, LedgerError> {
    let reserved = tx.allocated_totals(&workspace.id, None).await?;
    Ok(WorkspaceView { workspace, monthly_reserved: reserved.monthly, top_up_reserved: reserved.top_up })
}

/// The request field naming a thing, for error messages.
pub(super) type Field = &'static str;

pub(super) async fn existing_account(
    tx: &mut impl StoreTx,
    field: Field,
    id: &AccountId,
    lock: Lock,
) -> Result<Account, LedgerError> {
    tx.account(id, lock).await?.ok_or_else(|| LedgerError::NotFound { field, what: "account", id: id.to_string() })
}

pub(super) async fn existing_workspace(
    tx: &mut impl StoreTx,
    id: &WorkspaceId,
    lock: Lock,
) -> Result<Workspace, LedgerError> {
    tx.workspace(id, lock).await?.ok_or_else(|| LedgerError::NotFound {
        field: "workspace_id",
        what: "workspace",
        id: id.to_string(),
    })
}

pub(super) async fn existing_member(
    tx: &mut impl StoreTx,
    workspace: &WorkspaceId,
    account: &AccountId,
    lock: Lock,
) -> Result<Member, LedgerError> {
    tx.member(workspace, account, lock).await?.ok_or_else(|| LedgerError::NotFound {
        field: "account_id",
        what: "member",
        id: format!("{account} of workspace {workspace}"),
    })
}

/// A member with its open holds counted and its profiles.
pub(super) async fn member_view(tx: &mut impl StoreTx, member: Member) -> Result<MemberView, LedgerError> {
    let scope = crate::domain::Tenant::Workspace(member.workspace_id.clone());
    let open_reservations = tx.open_holds_of(&scope, &member.account_id).await?.count;
    let profile_ids = profile_ids_of(tx, &member).await?;
    Ok(MemberView { member, open_reservations, profile_ids })
}

/// The profiles a member is assigned to, by id.
pub(super) async fn profile_ids_of(tx: &mut impl StoreTx, member: &Member) -> Result<Vec<ProfileId>, LedgerError> {
    let assignments = tx.profile_assignments(&member.workspace_id, &member.account_id, &member.account_id).await?;
    Ok(assignments.into_iter().map(|(_, profile)| profile).collect())
}

/// What the profiles of `accounts` allow of `workspace`'s overflow pool. Profiles matter only
/// where there is an enabled pool to draw, so every other workspace skips the read.
pub(super) async fn pool_access(
    tx: &mut impl StoreTx,
    workspace: &Workspace,
    accounts: &[AccountId],
) -> Result<std::collections::HashMap<AccountId, PoolAccess>, LedgerError> {
    match &workspace.overflow {
        Some(pool) if pool.enabled => Ok(tx.pool_access(&workspace.id, accounts).await?),
        _ => Ok(std::collections::HashMap::new()),
    }
}
