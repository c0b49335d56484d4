//! Workspace use cases: create, read, pool size (W1, W2), top-up (W3).

use crate::domain::Tenant;
use serde::{Deserialize, Serialize};

use super::idempotency::fingerprint;
use super::views::{WorkspaceView, existing_account, existing_workspace, workspace_view};
use super::{Ledger, LedgerError};
use crate::domain::{
    Account, AccountId, AdminAction, Credits, DomainError, IdempotencyKey, Member, Movement, PoolSizeChange, Role,
    Split, Workspace, WorkspaceId, authorize,
};
use crate::store::{Lock, Store, StoreTx};

/// Create a workspace.
#[derive(Debug, Clone, Serialize)]
pub struct CreateWorkspace {
    /// Idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The new id.
    pub workspace_id: WorkspaceId,
    /// The owner; becomes the OWNER member.
    pub owner_account_id: AccountId,
}

/// Set the pool size.
#[derive(Debug, Clone, Serialize)]
pub struct SetPoolSize {
    /// Idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Who acts (must be the owner).
    pub actor_account_id: AccountId,
    /// The new size.
    pub pool_size_credits: Credits,
}

/// The workspace after a pool size change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSizeSet {
    /// The workspace.
    pub workspace: WorkspaceView,
    /// What was moved now.
    pub change: PoolSizeChange,
}

/// Top a workspace up from the owner's account.
#[derive(Debug, Clone, Serialize)]
pub struct TopUpWorkspace {
    /// Idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Who acts (must be the owner).
    pub actor_account_id: AccountId,
    /// Credits to move.
    pub amount_credits: Credits,
}

/// The workspace after a top-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToppedUp {
    /// The workspace.
    pub workspace: WorkspaceView,
    /// Where the credits came from.
    pub draw: Split,
}

impl<S: Store> Ledger<S> {
    /// Creates a workspace owned by an existing account, which becomes its OWNER member.
    pub async fn create_workspace(&self, command: CreateWorkspace) -> Result<WorkspaceView, LedgerError> {
        let request = fingerprint("CreateWorkspace", &command)?;
        let scope = &Tenant::Workspace(command.workspace_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            // Locked so the owner cannot change under the workspace being created (W2 sums).
            existing_account(&mut tx, "owner_account_id", &command.owner_account_id, Lock::Update).await?;
            let now_ms = self.now_ms();
            let workspace = Workspace::new(command.workspace_id.clone(), command.owner_account_id.clone(), now_ms);
            if !tx.insert_workspace(&workspace).await? {
                return Err(LedgerError::AlreadyExists {
                    field: "workspace_id",
                    what: "workspace",
                    id: command.workspace_id.to_string(),
                });
            }
            let owner =
                Member::new(command.workspace_id.clone(), command.owner_account_id.clone(), Role::Owner, now_ms);
            tx.insert_member(&owner).await?;
            let view = workspace_view(&mut tx, workspace).await?;
            self.finish(tx, scope, &command.idempotency_key, view).await
        })
        .await
    }

    /// Reads a workspace.
    pub async fn get_workspace(&self, id: &WorkspaceId) -> Result<WorkspaceView, LedgerError> {
        self.retrying(|| async {
            let mut tx = self.store.begin().await?;
            let workspace = existing_workspace(&mut tx, id, Lock::None).await?;
            workspace_view(&mut tx, workspace).await
        })
        .await
    }

    /// W1, W2: sets the pool size, funding a raise from the owner's account now.
    pub async fn set_pool_size(&self, command: SetPoolSize) -> Result<PoolSizeSet, LedgerError> {
        let request = fingerprint("SetPoolSize", &command)?;
        let scope = &Tenant::Workspace(command.workspace_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            let (workspace, change) = self
                .fund_as_owner(&mut tx, &command.workspace_id, &command.actor_account_id, &command.idempotency_key, {
                    |workspace, owner, other_pool_sizes| {
                        workspace.set_pool_size(owner, command.pool_size_credits, other_pool_sizes)
                    }
                })
                .await?;
            self.finish(tx, scope, &command.idempotency_key, PoolSizeSet { workspace, change }).await
        })
        .await
    }

    /// W3: moves credits from the owner's account into the workspace top-up pool.
    pub async fn top_up_workspace(&self, command: TopUpWorkspace) -> Result<ToppedUp, LedgerError> {
        let request = fingerprint("TopUpWorkspace", &command)?;
        let scope = &Tenant::Workspace(command.workspace_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            let (workspace, draw) = self
                .fund_as_owner(&mut tx, &command.workspace_id, &command.actor_account_id, &command.idempotency_key, {
                    |workspace, owner, _| workspace.top_up(owner, command.amount_credits)
                })
                .await?;
            self.finish(tx, scope, &command.idempotency_key, ToppedUp { workspace, draw }).await
        })
        .await
    }

    /// The owner-only funding script W1 and W3 share: lock the owner, then the workspace; check the
    /// actor owns it; let `decide` move credits (given the owner's other pool sizes, for W2);
    /// write both and the journal.
    async fn fund_as_owner<T>(
        &self,
        tx: &mut S::Tx,
        workspace_id: &WorkspaceId,
        actor: &AccountId,
        reference: &IdempotencyKey,
        decide: impl FnOnce(&mut Workspace, &mut Account, Credits) -> Result<(T, Vec<Movement>), DomainError>,
    ) -> Result<(WorkspaceView, T), LedgerError> {
        let (mut owner, mut workspace) = self.lock_owner_and_workspace(tx, workspace_id).await?;
        let membership = tx.member(&workspace.id, actor, Lock::None).await?;
        authorize(actor, membership.as_ref(), AdminAction::ManageFunding)?;
        let other_pool_sizes = tx.pool_sizes_owned(&owner.id, Some(&workspace.id)).await?;
        let (outcome, movements) = decide(&mut workspace, &mut owner, other_pool_sizes)?;
        tx.update_account(&owner).await?;
        tx.update_workspace(&workspace).await?;
        tx.append_journal(&super::journal(reference, &movements), self.now_ms()).await?;
        Ok((workspace_view(tx, workspace).await?, outcome))
    }

    /// Locks a workspace's owner account, then the workspace: the fixed lock order. The owner is
    /// read first without a lock; it never changes, so the locked rows are the right ones.
    async fn lock_owner_and_workspace(
        &self,
        tx: &mut S::Tx,
        id: &WorkspaceId,
    ) -> Result<(crate::domain::Account, Workspace), LedgerError> {
        let owner_id = existing_workspace(tx, id, Lock::None).await?.owner;
        let owner = existing_account(tx, "workspace_id", &owner_id, Lock::Update).await?;
        let workspace = existing_workspace(tx, id, Lock::Update).await?;
        Ok((owner, workspace))
    }
}
