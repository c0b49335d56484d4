//! The notification stream's use cases: publish in commit order, read from a cursor, thresholds.

use crate::domain::Tenant;
use serde::{Deserialize, Serialize};

use super::idempotency::fingerprint;
use super::views::{WorkspaceView, existing_workspace, workspace_view};
use super::{Ledger, LedgerError};
use crate::domain::{AccountId, AdminAction, IdempotencyKey, LowBalanceThresholds, WorkspaceId, authorize};
use crate::store::{Lock, NotificationFilter, PublishedNotification, Store, StoreTx};

/// Set a workspace's low-balance thresholds.
#[derive(Debug, Clone, Serialize)]
pub struct SetLowBalanceThresholds {
    /// Idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Who acts (OWNER or ADMIN).
    pub actor_account_id: AccountId,
    /// The thresholds.
    pub thresholds: LowBalanceThresholds,
}

/// Where a cursor stands against what the stream still keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamBounds {
    /// The last position handed out.
    pub last: i64,
    /// The oldest position still kept, if any event is.
    pub oldest_kept: Option<i64>,
}

impl StreamBounds {
    /// Whether events after `cursor` were pruned, so a client resuming there would miss some.
    /// Cursor 0 asks for whatever is kept, and is never refused.
    pub fn lost_after(&self, cursor: i64) -> bool {
        cursor > 0 && cursor < self.last && self.oldest_kept.is_none_or(|oldest| cursor + 1 < oldest)
    }
}

impl<S: Store> Ledger<S> {
    /// Sets when LOW_BALANCE fires for a workspace (OWNER or ADMIN).
    pub async fn set_low_balance_thresholds(
        &self,
        command: SetLowBalanceThresholds,
    ) -> Result<WorkspaceView, LedgerError> {
        let request = fingerprint("SetLowBalanceThresholds", &command)?;
        let scope = &Tenant::Workspace(command.workspace_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            let mut workspace = existing_workspace(&mut tx, &command.workspace_id, Lock::Update).await?;
            let actor = tx.member(&workspace.id, &command.actor_account_id, Lock::None).await?;
            authorize(&command.actor_account_id, actor.as_ref(), AdminAction::ManageMembers)?;
            workspace.thresholds = command.thresholds;
            tx.update_workspace(&workspace).await?;
            let view = workspace_view(&mut tx, workspace).await?;
            self.finish(tx, scope, &command.idempotency_key, view).await
        })
        .await
    }

    /// Hands the next stream positions to every committed, unpublished event, in one place:
    /// publishers (of any replica) take turns on the stream's position row, and each sees what
    /// the previous one published. Returns how many events it published.
    pub async fn publish_notifications(&self) -> Result<u64, LedgerError> {
        self.retrying(|| async {
            let mut tx = self.store.begin().await?;
            let last = tx.lock_stream_position().await?;
            let published = tx.assign_positions(last).await?;
            if published > 0 {
                tx.advance_stream(published).await?;
            }
            tx.commit().await?;
            Ok(published)
        })
        .await
    }

    /// Published events after `position` matching `filter`, in stream order.
    pub async fn notifications_after(
        &self,
        position: i64,
        filter: &NotificationFilter,
        limit: u32,
    ) -> Result<Vec<PublishedNotification>, LedgerError> {
        self.retrying(|| async {
            let mut tx = self.store.begin().await?;
            Ok(tx.notifications_after(position, filter, limit).await?)
        })
        .await
    }

    /// The stream's last position and oldest kept one.
    pub async fn stream_bounds(&self) -> Result<StreamBounds, LedgerError> {
        self.retrying(|| async {
            let mut tx = self.store.begin().await?;
            let (last, oldest_kept) = tx.stream_bounds().await?;
            Ok(StreamBounds { last, oldest_kept })
        })
        .await
    }

    /// Deletes published events older than `older_than_ms`.
    pub async fn prune_notifications(&self, older_than_ms: i64) -> Result<u64, LedgerError> {
        self.retrying(|| async {
            let mut tx = self.store.begin().await?;
            let deleted = tx.prune_notifications(self.now_ms().saturating_sub(older_than_ms)).await?;
            tx.commit().await?;
            Ok(deleted)
        })
        .await
    }
}
