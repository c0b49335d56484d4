//! Billing cycles: RenewAccount (R1–R4, R6), FundWorkspacePools (R5), and the scheduler's pass.

use crate::domain::Tenant;
use serde::{Deserialize, Serialize};

use super::idempotency::fingerprint;
use super::views::{AccountView, WorkspaceView, account_view, existing_account, workspace_view};
use super::{Ledger, LedgerError, journal};
use crate::domain::{AccountId, Credits, DomainError, IdempotencyKey, Notification, Period, Renewal, Workspace, renew};
use crate::store::{Lock, Store, StoreTx};

/// Renew an account for a period.
#[derive(Debug, Clone)]
pub struct RenewAccount {
    /// The caller's key (recorded; the renewal itself is idempotent per period).
    pub idempotency_key: IdempotencyKey,
    /// The account.
    pub account_id: AccountId,
    /// The period to start.
    pub period: Period,
    /// Renew only if `period` is the one due now (the scheduler); the billing system may renew
    /// early.
    pub only_if_due: bool,
}

/// What identifies a renewal: one per account and period, whoever asks.
#[derive(Serialize)]
struct RenewalRequest<'a> {
    account_id: &'a AccountId,
    period: Period,
}

/// An account after a renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewed {
    /// The account.
    pub account: AccountView,
    /// What the renewal did.
    pub renewal: Renewal,
    /// The account's workspaces.
    pub workspaces: Vec<WorkspaceView>,
}

/// Fund an account's unfunded pools for the current period.
#[derive(Debug, Clone, Serialize)]
pub struct FundWorkspacePools {
    /// Idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The owner.
    pub account_id: AccountId,
}

/// An account after funding its pools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolsFunded {
    /// The account.
    pub account: AccountView,
    /// The workspaces funded now.
    pub workspaces: Vec<WorkspaceView>,
    /// Credits moved.
    pub funded: Credits,
}

/// Most periods one account is caught up by in one scheduler pass.
const MAX_CATCH_UP_PERIODS: usize = 120;

impl<S: Store> Ledger<S> {
    /// R1–R4: starts `period` for the account and every workspace it owns, in one transaction
    /// that locks the account, then its workspaces in id order, then their members. The same
    /// period again returns the first renewal's result; an earlier one is refused (R6).
    pub async fn renew_account(&self, command: RenewAccount) -> Result<Renewed, LedgerError> {
        let request =
            fingerprint("RenewAccount", &RenewalRequest { account_id: &command.account_id, period: command.period })?;
        let key = IdempotencyKey::for_operation("RenewAccount", &command.period);
        let scope = &Tenant::Account(command.account_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &key, &request).await?);
            let mut account = existing_account(&mut tx, "account_id", &command.account_id, Lock::Update).await?;
            let now_ms = self.now_ms();
            // Checked under the account's lock: a due list read earlier may be stale by now.
            if command.only_if_due {
                account.ensure_due(command.period, now_ms)?;
            }
            let mut workspaces = tx.lock_owned_workspaces(&account.id).await?;
            let (renewal, movements) = renew(&mut account, &mut workspaces, command.period, now_ms)?;
            tx.update_account(&account).await?;
            for workspace in &workspaces {
                tx.update_workspace(workspace).await?;
            }
            tx.reset_monthly_usage(&renewal.workspace_ids).await?;
            tx.append_journal(&journal(&key, &movements), now_ms).await?;
            let events = [Notification::renewal(&account.id, &renewal)];
            let result = Renewed {
                account: account_view(&mut tx, account).await?,
                workspaces: self.workspace_views(&mut tx, workspaces).await?,
                renewal,
            };
            let result = self.finish_notifying(tx, scope, &key, result, &events).await?;
            crate::metrics::renewal(result.renewal.succeeded);
            Ok(result)
        })
        .await
    }

    /// R5: funds every unfunded pool of the account for the current period, all or nothing;
    /// no second refresh and no usage reset.
    pub async fn fund_workspace_pools(&self, command: FundWorkspacePools) -> Result<PoolsFunded, LedgerError> {
        let request = fingerprint("FundWorkspacePools", &command)?;
        let scope = &Tenant::Account(command.account_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            let mut account = existing_account(&mut tx, "account_id", &command.account_id, Lock::Update).await?;
            let mut workspaces = tx.lock_owned_workspaces(&account.id).await?;
            let unfunded: Vec<bool> = workspaces.iter().map(|w| !w.monthly_pool_funded).collect();
            let (funded, movements) = Workspace::fund_unfunded(&mut account, &mut workspaces)?;
            tx.update_account(&account).await?;
            let funded_now: Vec<Workspace> = workspaces
                .into_iter()
                .zip(unfunded)
                .filter(|(_, was_unfunded)| *was_unfunded)
                .map(|(w, _)| w)
                .collect();
            for workspace in &funded_now {
                tx.update_workspace(workspace).await?;
            }
            tx.append_journal(&journal(&command.idempotency_key, &movements), self.now_ms()).await?;
            let result = PoolsFunded {
                account: account_view(&mut tx, account).await?,
                workspaces: self.workspace_views(&mut tx, funded_now).await?,
                funded,
            };
            self.finish(tx, scope, &command.idempotency_key, result).await
        })
        .await
    }

    /// R6: renews every account whose next anchored period has started, one period at a time and
    /// in order, catching up after downtime. With several replicas each renewal still happens once:
    /// a renewal is keyed by its period, so a second attempt replays the first.
    pub async fn renew_due_accounts(&self, batch: u32) -> Result<u32, LedgerError> {
        let mut renewed = 0;
        for _ in 0..MAX_CATCH_UP_PERIODS {
            let due = self
                .retrying(|| async {
                    let mut tx = self.store.begin().await?;
                    Ok(tx.due_renewals(self.now_ms(), batch).await?)
                })
                .await?;
            if due.is_empty() {
                break;
            }
            for account_id in due {
                let account = self.get_account(&account_id).await?.account;
                let Some(period) = account.period.map(Period::next) else { continue };
                let idempotency_key = IdempotencyKey::for_operation("scheduled", &period);
                match self.renew_account(RenewAccount { idempotency_key, account_id, period, only_if_due: true }).await
                {
                    Ok(_) => renewed += 1,
                    // Renewed meanwhile (by another replica or the billing system).
                    Err(LedgerError::Rule(DomainError::PeriodNotAfter { .. } | DomainError::RenewalNotDue { .. })) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(renewed)
    }

    async fn workspace_views(
        &self,
        tx: &mut S::Tx,
        workspaces: Vec<Workspace>,
    ) -> Result<Vec<WorkspaceView>, LedgerError> {
        let mut views = Vec::with_capacity(workspaces.len());
        for workspace in workspaces {
            views.push(workspace_view(tx, workspace).await?);
        }
        Ok(views)
    }
}
