//! Product profiles (who may draw the overflow pool) and the overflow pool's configuration.
//!
//! Every script locks the workspace row first, as the hot path does before it reads profiles,
//! so a toggled access, a deleted profile or an unassigned member holds for the very next call.

use crate::domain::Tenant;
use serde::Serialize;

use super::idempotency::fingerprint;
use super::views::{Page, WorkspaceView, existing_workspace, workspace_view};
use super::{Ledger, LedgerError};
use crate::domain::{
    AccountId, AdminAction, IdempotencyKey, Notification, NotificationKind, NotificationPayload, OverflowPool,
    OverflowSettings, Profile, ProfileId, Workspace, WorkspaceId, authorize,
};
use crate::store::{Lock, Store, StoreTx};

/// Create a profile (OWNER or ADMIN).
#[derive(Debug, Clone, Serialize)]
pub struct CreateProfile {
    /// Idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Who acts.
    pub actor_account_id: AccountId,
    /// The new profile's id.
    pub profile_id: ProfileId,
    /// Display name, already checked.
    pub name: String,
    /// Members may draw the overflow pool.
    pub pool_access: bool,
    /// Assigning writes MEMBER_ASSIGNED_TO_PROFILE.
    pub notify_on_assign: bool,
    /// Overflow draws need the request's consent.
    pub requires_consent: bool,
}

/// Change a profile's name or toggles; `None` keeps a value.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateProfile {
    /// Idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Who acts.
    pub actor_account_id: AccountId,
    /// The profile.
    pub profile_id: ProfileId,
    /// New name.
    pub name: Option<String>,
    /// New pool access.
    pub pool_access: Option<bool>,
    /// New notify toggle.
    pub notify_on_assign: Option<bool>,
    /// New consent requirement.
    pub requires_consent: Option<bool>,
}

/// Delete a profile, or assign or unassign members: the profile's key and who acts.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileChange {
    /// Idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Who acts.
    pub actor_account_id: AccountId,
    /// The profile.
    pub profile_id: ProfileId,
    /// Members to assign or unassign (empty for a deletion).
    pub account_ids: Vec<AccountId>,
}

/// Configure the overflow pool (OWNER only).
#[derive(Debug, Clone, Serialize)]
pub struct ConfigureOverflowPool {
    /// Idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Who acts.
    pub actor_account_id: AccountId,
    /// The pool's settings, already checked.
    pub settings: OverflowSettings,
}

impl<S: Store> Ledger<S> {
    /// Creates a profile with no members.
    pub async fn create_profile(&self, command: CreateProfile) -> Result<Profile, LedgerError> {
        let request = fingerprint("CreateProfile", &command)?;
        let scope = &Tenant::Workspace(command.workspace_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            self.lock_workspace_as(&mut tx, &command.workspace_id, &command.actor_account_id).await?;
            let profile = Profile {
                workspace_id: command.workspace_id.clone(),
                id: command.profile_id.clone(),
                name: command.name.clone(),
                pool_access: command.pool_access,
                notify_on_assign: command.notify_on_assign,
                requires_consent: command.requires_consent,
                members: Vec::new(),
                created_at_ms: self.now_ms(),
            };
            if !tx.insert_profile(&profile).await? {
                return Err(LedgerError::AlreadyExists {
                    field: "profile_id",
                    what: "profile",
                    id: format!("{} in {}", command.profile_id, command.workspace_id),
                });
            }
            self.finish(tx, scope, &command.idempotency_key, profile).await
        })
        .await
    }

    /// Changes a profile; a toggled pool access holds for the very next hot-path call.
    pub async fn update_profile(&self, command: UpdateProfile) -> Result<Profile, LedgerError> {
        let request = fingerprint("UpdateProfile", &command)?;
        let scope = &Tenant::Workspace(command.workspace_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            let (_, mut profile) = self
                .lock_profile_as(&mut tx, &command.workspace_id, &command.profile_id, &command.actor_account_id)
                .await?;
            if let Some(name) = &command.name {
                profile.name.clone_from(name);
            }
            profile.pool_access = command.pool_access.unwrap_or(profile.pool_access);
            profile.notify_on_assign = command.notify_on_assign.unwrap_or(profile.notify_on_assign);
            profile.requires_consent = command.requires_consent.unwrap_or(profile.requires_consent);
            tx.update_profile(&profile).await?;
            self.finish(tx, scope, &command.idempotency_key, profile).await
        })
        .await
    }

    /// Deletes a profile and its assignments; answers the profile as it was.
    pub async fn delete_profile(&self, command: ProfileChange) -> Result<Profile, LedgerError> {
        let request = fingerprint("DeleteProfile", &command)?;
        let scope = &Tenant::Workspace(command.workspace_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            let (_, profile) = self
                .lock_profile_as(&mut tx, &command.workspace_id, &command.profile_id, &command.actor_account_id)
                .await?;
            tx.delete_profile(&profile).await?;
            self.finish(tx, scope, &command.idempotency_key, profile).await
        })
        .await
    }

    /// Assigns workspace members to a profile (those already in it are left as they are); with
    /// the notify toggle on, each newly assigned member gets MEMBER_ASSIGNED_TO_PROFILE.
    pub async fn assign_profile_members(&self, command: ProfileChange) -> Result<Profile, LedgerError> {
        let request = fingerprint("AssignProfileMembers", &command)?;
        let scope = &Tenant::Workspace(command.workspace_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            let (workspace, mut profile) = self
                .lock_profile_as(&mut tx, &command.workspace_id, &command.profile_id, &command.actor_account_id)
                .await?;
            let mut added: Vec<AccountId> = Vec::new();
            for account in &command.account_ids {
                if tx.member(&profile.workspace_id, account, Lock::None).await?.is_none() {
                    return Err(LedgerError::NotFound {
                        field: "account_ids",
                        what: "member",
                        id: format!("{account} of workspace {}", profile.workspace_id),
                    });
                }
                if !profile.members.contains(account) && !added.contains(account) {
                    added.push(account.clone());
                }
            }
            tx.change_profile_members(&profile, &added, &[]).await?;
            profile.members.extend(added.iter().cloned());
            profile.members.sort();
            let events: Vec<Notification> = if profile.notify_on_assign {
                added.iter().map(|member| assigned(&workspace.owner, &profile, member)).collect()
            } else {
                Vec::new()
            };
            self.finish_notifying(tx, scope, &command.idempotency_key, profile, &events).await
        })
        .await
    }

    /// Unassigns members from a profile (those not in it are ignored); holds for the next call.
    pub async fn unassign_profile_members(&self, command: ProfileChange) -> Result<Profile, LedgerError> {
        let request = fingerprint("UnassignProfileMembers", &command)?;
        let scope = &Tenant::Workspace(command.workspace_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            let (_, mut profile) = self
                .lock_profile_as(&mut tx, &command.workspace_id, &command.profile_id, &command.actor_account_id)
                .await?;
            let removed: Vec<AccountId> =
                profile.members.iter().filter(|member| command.account_ids.contains(member)).cloned().collect();
            tx.change_profile_members(&profile, &[], &removed).await?;
            profile.members.retain(|member| !removed.contains(member));
            self.finish(tx, scope, &command.idempotency_key, profile).await
        })
        .await
    }

    /// A page of a workspace's profiles, ordered by id.
    pub async fn list_profiles(
        &self,
        workspace_id: &WorkspaceId,
        page_size: u32,
        after: Option<&ProfileId>,
    ) -> Result<Page<Profile>, LedgerError> {
        let limit = super::members::page_limit(page_size);
        self.retrying(|| async {
            let mut tx = self.store.begin().await?;
            existing_workspace(&mut tx, workspace_id, Lock::None).await?;
            let profiles = tx.profiles(workspace_id, after, limit + 1).await?;
            Ok(super::members::paginate(profiles, limit, |profile| profile.id.to_string()))
        })
        .await
    }

    /// C4: configures the overflow pool. A new contract period label closes the current period
    /// (its totals are kept for reports) and starts one with nothing used.
    pub async fn configure_overflow_pool(&self, command: ConfigureOverflowPool) -> Result<WorkspaceView, LedgerError> {
        let request = fingerprint("ConfigureOverflowPool", &command)?;
        let scope = &Tenant::Workspace(command.workspace_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            let mut workspace = existing_workspace(&mut tx, &command.workspace_id, Lock::Update).await?;
            let membership = tx.member(&workspace.id, &command.actor_account_id, Lock::None).await?;
            authorize(&command.actor_account_id, membership.as_ref(), AdminAction::ManageFunding)?;
            let now_ms = self.now_ms();
            let pool = OverflowPool::configure(workspace.overflow.as_ref(), command.settings.clone(), now_ms);
            if let Some(closed) = workspace.overflow.as_ref().filter(|current| current.cycle != pool.cycle) {
                tx.insert_overflow_period(&workspace.id, closed, now_ms).await?;
            }
            workspace.overflow = Some(pool);
            tx.update_workspace(&workspace).await?;
            let view = workspace_view(&mut tx, workspace).await?;
            self.finish(tx, scope, &command.idempotency_key, view).await
        })
        .await
    }

    /// Locks the workspace as an OWNER or ADMIN actor (M1), then reads the profile.
    async fn lock_profile_as(
        &self,
        tx: &mut S::Tx,
        workspace_id: &WorkspaceId,
        profile_id: &ProfileId,
        actor: &AccountId,
    ) -> Result<(Workspace, Profile), LedgerError> {
        let workspace = self.lock_workspace_as(tx, workspace_id, actor).await?;
        let profile = tx.profile(workspace_id, profile_id).await?.ok_or_else(|| LedgerError::NotFound {
            field: "profile_id",
            what: "profile",
            id: format!("{profile_id} in {workspace_id}"),
        })?;
        Ok((workspace, profile))
    }
}

/// MEMBER_ASSIGNED_TO_PROFILE for `member`, addressed to the workspace owner.
fn assigned(owner: &AccountId, profile: &Profile, member: &AccountId) -> Notification {
    Notification {
        kind: NotificationKind::MemberAssignedToProfile,
        account_id: owner.clone(),
        workspace_id: Some(profile.workspace_id.clone()),
        member_account_id: Some(member.clone()),
        payload: NotificationPayload::ProfileAssigned {
            profile_id: profile.id.clone(),
            profile_name: profile.name.clone(),
        },
    }
}
