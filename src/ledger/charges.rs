//! The hot path: Consume, Reserve, Commit, Release, Refund, GetBalance, and hold expiry.
//!
//! The five mutations' commands live here: each is fingerprinted for C7 and handed, as a
//! [`HotCall`], to the committers (see [`batch`](super::batch)), which apply it in a batch of one
//! or more scopes, each call deciding on its own.

use serde::{Deserialize, Serialize};

use super::idempotency::fingerprint;
use super::views::{existing_account, existing_member, existing_workspace, pool_access};
use super::{Ledger, LedgerError};
use crate::domain::{
    AccountId, Charge, ChargeKey, Credits, GivenBack, IdempotencyKey, MAX_AMOUNT_CREDITS, Split, Tenant, Wallet,
    WorkspaceId,
};
use crate::store::{HoldCursor, Lock, Store, StoreTx};

/// Charge an amount at once.
#[derive(Debug, Clone, Serialize)]
pub struct Consume {
    /// Idempotency key; also names the consumption.
    pub idempotency_key: ChargeKey,
    /// Who generates.
    pub account_id: AccountId,
    /// The workspace; `None` for personal context.
    pub workspace_id: Option<WorkspaceId>,
    /// Credits.
    pub amount_credits: Credits,
    /// Consent to draw an overflow pool whose profiles require it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_overflow: bool,
}

/// Take credits into a hold.
#[derive(Debug, Clone, Serialize)]
pub struct Reserve {
    /// The caller's hold key.
    pub reservation_key: ChargeKey,
    /// Who generates.
    pub account_id: AccountId,
    /// The workspace; `None` for personal context.
    pub workspace_id: Option<WorkspaceId>,
    /// Credits.
    pub amount_credits: Credits,
    /// Seconds until expiry, already checked against the limits.
    pub ttl_seconds: u32,
    /// Consent to draw an overflow pool whose profiles require it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_overflow: bool,
}

/// Capture a hold.
#[derive(Debug, Clone, Serialize)]
pub struct Commit {
    /// The hold's key.
    pub reservation_key: ChargeKey,
    /// Who generates (must match the hold).
    pub account_id: AccountId,
    /// The workspace (must match the hold).
    pub workspace_id: Option<WorkspaceId>,
    /// Credits to capture.
    pub amount_credits: Credits,
    /// Consent to draw an overflow pool whose profiles require it, for an extra above the hold.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_overflow: bool,
}

/// Return a hold.
#[derive(Debug, Clone, Serialize)]
pub struct Release {
    /// The hold's key.
    pub reservation_key: ChargeKey,
    /// Who generates (must match the hold).
    pub account_id: AccountId,
    /// The workspace (must match the hold).
    pub workspace_id: Option<WorkspaceId>,
}

/// Refund a consumption.
#[derive(Debug, Clone, Serialize)]
pub struct Refund {
    /// Idempotency key of the refund.
    pub idempotency_key: IdempotencyKey,
    /// Who generated (must match the consumption).
    pub account_id: AccountId,
    /// The workspace (must match the consumption).
    pub workspace_id: Option<WorkspaceId>,
    /// The consumption.
    pub consumption_key: ChargeKey,
    /// Credits; `None` for everything not yet refunded.
    pub amount_credits: Option<Credits>,
}

/// A charge after a call, and what went back to the buckets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeOutcome {
    /// The charge.
    pub charge: Charge,
    /// Returned (and forfeited) by this call.
    pub given_back: GivenBack,
}

/// What a member (or an account, in personal context) can spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// The wallet as loaded.
    pub wallet: Wallet,
    /// What a Consume could take now, by bucket (the overflow part capped at the most one call
    /// may take; it needs `allow_overflow` where the wallet's access says so).
    pub spendable: Split,
    /// Credits held by open holds.
    pub held: Credits,
}

/// A page of open holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldPage {
    /// The holds, by member, oldest first.
    pub holds: Vec<Charge>,
    /// Where the next page starts.
    pub next: Option<HoldCursor>,
}

fn scope_of(account_id: &AccountId, workspace_id: Option<&WorkspaceId>) -> Tenant {
    match workspace_id {
        Some(workspace) => Tenant::Workspace(workspace.clone()),
        None => Tenant::Account(account_id.clone()),
    }
}

/// A hot-path call waiting for its batch.
#[derive(Debug)]
pub(super) enum HotCall {
    /// C1–C3.
    Consume(Consume),
    /// C5.
    Reserve(Reserve),
    /// C5.
    Commit(Commit),
    /// C5.
    Release(Release),
    /// C6.
    Refund(Refund),
    /// The sweeper releasing a hold past its TTL.
    Expire(ChargeKey),
}

impl HotCall {
    pub(super) fn charge_key(&self) -> &ChargeKey {
        match self {
            HotCall::Consume(call) => &call.idempotency_key,
            HotCall::Reserve(call) => &call.reservation_key,
            HotCall::Commit(call) => &call.reservation_key,
            HotCall::Release(call) => &call.reservation_key,
            HotCall::Refund(call) => &call.consumption_key,
            HotCall::Expire(key) => key,
        }
    }

    /// The account the call is made for; an expiry learns it from the charge.
    pub(super) fn account_id(&self) -> Option<&AccountId> {
        match self {
            HotCall::Consume(call) => Some(&call.account_id),
            HotCall::Reserve(call) => Some(&call.account_id),
            HotCall::Commit(call) => Some(&call.account_id),
            HotCall::Release(call) => Some(&call.account_id),
            HotCall::Refund(call) => Some(&call.account_id),
            HotCall::Expire(_) => None,
        }
    }
}

impl<S: Store> Ledger<S> {
    /// C1–C3, A1: charges `amount` at once.
    pub async fn consume(&self, command: Consume) -> Result<Charge, LedgerError> {
        let request = fingerprint("Consume", &command)?;
        let scope = scope_of(&command.account_id, command.workspace_id.as_ref());
        let key = IdempotencyKey::for_operation("Consume", &command.idempotency_key);
        Ok(self.submit(scope, HotCall::Consume(command), key, Some(request)).await?.charge)
    }

    /// C5: takes `amount` into a hold named by the caller's key.
    pub async fn reserve(&self, command: Reserve) -> Result<Charge, LedgerError> {
        let request = fingerprint("Reserve", &command)?;
        let scope = scope_of(&command.account_id, command.workspace_id.as_ref());
        let key = IdempotencyKey::for_operation("Reserve", &command.reservation_key);
        Ok(self.submit(scope, HotCall::Reserve(command), key, Some(request)).await?.charge)
    }

    /// C5: captures all, part, or more of a hold.
    pub async fn commit(&self, command: Commit) -> Result<ChargeOutcome, LedgerError> {
        let request = fingerprint("Commit", &command)?;
        let scope = scope_of(&command.account_id, command.workspace_id.as_ref());
        let key = IdempotencyKey::for_operation("Commit", &command.reservation_key);
        self.submit(scope, HotCall::Commit(command), key, Some(request)).await
    }

    /// C5: returns everything a hold took.
    pub async fn release(&self, command: Release) -> Result<ChargeOutcome, LedgerError> {
        let request = fingerprint("Release", &command)?;
        let scope = scope_of(&command.account_id, command.workspace_id.as_ref());
        let key = IdempotencyKey::for_operation("Release", &command.reservation_key);
        self.submit(scope, HotCall::Release(command), key, Some(request)).await
    }

    /// C6: returns credits of a consumption to the buckets they came from, last-drawn first.
    pub async fn refund(&self, command: Refund) -> Result<ChargeOutcome, LedgerError> {
        let request = fingerprint("Refund", &command)?;
        let scope = scope_of(&command.account_id, command.workspace_id.as_ref());
        let key = command.idempotency_key.clone();
        self.submit(scope, HotCall::Refund(command), key, Some(request)).await
    }

    /// What `account_id` can spend in `workspace_id` (or personally), without locking.
    pub async fn balance(
        &self,
        account_id: &AccountId,
        workspace_id: Option<&WorkspaceId>,
    ) -> Result<Balance, LedgerError> {
        let scope = scope_of(account_id, workspace_id);
        self.retrying(|| async {
            let mut tx = self.store.begin().await?;
            let wallet = match &scope {
                Tenant::Account(account) => {
                    Wallet::Personal { account: existing_account(&mut tx, "account_id", account, Lock::None).await? }
                }
                Tenant::Workspace(workspace) => {
                    let workspace = existing_workspace(&mut tx, workspace, Lock::None).await?;
                    let member = existing_member(&mut tx, &workspace.id, account_id, Lock::None).await?;
                    let mut access = pool_access(&mut tx, &workspace, std::slice::from_ref(account_id)).await?;
                    let access = access.remove(account_id).unwrap_or_default();
                    Wallet::Workspace { workspace, member, access }
                }
            };
            let held = tx.open_holds_of(&scope, account_id).await?.held;
            // One call takes at most MAX_AMOUNT_CREDITS, so an overflow pool without an overage
            // limit shows that much.
            let most = Credits::new(MAX_AMOUNT_CREDITS).unwrap_or_default();
            let spendable = match &wallet {
                Wallet::Workspace { member, .. } if !member.role.holds_allowance() => Split::default(),
                _ => wallet.drawable(),
            };
            let spendable = Split { overflow: spendable.overflow.min(most), ..spendable };
            Ok(Balance { wallet, spendable, held })
        })
        .await
    }

    /// C5b: open holds of a workspace (or of an account's personal context), by member and age.
    pub async fn list_holds(
        &self,
        scope: &Tenant,
        account_id: Option<&AccountId>,
        page_size: u32,
        after: Option<&HoldCursor>,
    ) -> Result<HoldPage, LedgerError> {
        let limit = super::members::page_limit(page_size);
        self.retrying(|| async {
            let mut tx = self.store.begin().await?;
            match scope {
                Tenant::Workspace(id) => drop(existing_workspace(&mut tx, id, Lock::None).await?),
                Tenant::Account(id) => drop(existing_account(&mut tx, "account_id", id, Lock::None).await?),
            }
            let mut holds = tx.open_holds(scope, account_id, after, limit + 1).await?;
            let more = holds.len() > usize::try_from(limit).unwrap_or(usize::MAX);
            holds.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            let next = more.then(|| holds.last()).flatten().map(|last| HoldCursor {
                account_id: last.account_id.to_string(),
                created_at_ms: last.created_at_ms,
                key: last.key.to_string(),
            });
            Ok(HoldPage { holds, next })
        })
        .await
    }

    /// C5: releases holds whose TTL has run out, at most `batch` of them; returns how many.
    ///
    /// Safe with several replicas: each hold is re-read under its scope's locks and only an open,
    /// expired one is released, so a hold that another replica (or a Commit) closed first is left.
    pub async fn expire_holds(&self, batch: u32) -> Result<u32, LedgerError> {
        let candidates = self
            .retrying(|| async {
                let mut tx = self.store.begin().await?;
                Ok(tx.expired_holds(self.now_ms(), batch).await?)
            })
            .await?;
        let expiries = candidates.into_iter().map(|(scope, key)| {
            let reference = IdempotencyKey::for_operation("Expire", &key);
            self.submit(scope, HotCall::Expire(key), reference, None)
        });
        let mut expired = 0;
        for outcome in futures_util::future::join_all(expiries).await {
            match outcome {
                Ok(_) => expired += 1,
                // Closed meanwhile (committed, released, or its member removed): nothing to do.
                Err(LedgerError::Rule(_) | LedgerError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(expired)
    }

    /// Deletes idempotency records older than the retention; returns how many.
    pub async fn prune_idempotency(&self, older_than_ms: i64, batch: u32) -> Result<u64, LedgerError> {
        self.retrying(|| async {
            let mut tx = self.store.begin().await?;
            let deleted = tx.prune_idempotency(self.now_ms().saturating_sub(older_than_ms), batch).await?;
            tx.commit().await?;
            Ok(deleted)
        })
        .await
    }

    /// C5b: releases every open hold of a member being removed, inside the caller's transaction.
    pub(super) async fn release_holds_of(
        &self,
        tx: &mut S::Tx,
        wallet: &mut Wallet,
        reference: &IdempotencyKey,
    ) -> Result<u32, LedgerError> {
        let scope = wallet.scope();
        let account_id = wallet.account_id().clone();
        let mut released = 0;
        loop {
            let holds = tx.open_holds(&scope, Some(&account_id), None, 100).await?;
            if holds.is_empty() {
                return Ok(released);
            }
            for mut hold in holds {
                let (_, movements) = hold.release(wallet, false)?;
                tx.update_charges(std::slice::from_ref(&hold)).await?;
                tx.append_journal(&super::journal(reference, &movements), self.now_ms()).await?;
                released += 1;
            }
        }
    }
}
