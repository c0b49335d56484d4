//! Account use cases: create, read, plan (A3), purchase (A2).

use crate::domain::Tenant;
use serde::{Deserialize, Serialize};

use super::idempotency::fingerprint;
use super::views::{AccountView, account_view, existing_account};
use super::{Ledger, LedgerError};
use crate::domain::{Account, AccountId, BillingAnchor, Credits, IdempotencyKey};
use crate::store::{Lock, Store, StoreTx};

/// Create an account.
#[derive(Debug, Clone, Serialize)]
pub struct CreateAccount {
    /// Idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The new id.
    pub account_id: AccountId,
}

/// Set an account's plan.
#[derive(Debug, Clone, Serialize)]
pub struct SetAccountPlan {
    /// Idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The account.
    pub account_id: AccountId,
    /// Monthly credits of the plan.
    pub monthly_credits: Credits,
    /// When the account renews on its own.
    pub billing_anchor: Option<BillingAnchor>,
}

/// The account after a plan change and what it was granted now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSet {
    /// The account.
    pub account: AccountView,
    /// Credits granted now.
    pub granted: Credits,
}

/// Add bought credits.
#[derive(Debug, Clone, Serialize)]
pub struct AddAccountCredits {
    /// Idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// The account.
    pub account_id: AccountId,
    /// Credits bought.
    pub amount_credits: Credits,
}

impl<S: Store> Ledger<S> {
    /// Creates an account with no credits.
    pub async fn create_account(&self, command: CreateAccount) -> Result<AccountView, LedgerError> {
        let request = fingerprint("CreateAccount", &command)?;
        let scope = &Tenant::Account(command.account_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            let account = Account::new(command.account_id.clone(), self.now_ms());
            if !tx.insert_account(&account).await? {
                return Err(LedgerError::AlreadyExists {
                    field: "account_id",
                    what: "account",
                    id: command.account_id.to_string(),
                });
            }
            let view = AccountView { account, owned_pool_size: Credits::ZERO };
            self.finish(tx, scope, &command.idempotency_key, view).await
        })
        .await
    }

    /// Reads an account.
    pub async fn get_account(&self, id: &AccountId) -> Result<AccountView, LedgerError> {
        self.retrying(|| async {
            let mut tx = self.store.begin().await?;
            let account = existing_account(&mut tx, "account_id", id, Lock::None).await?;
            account_view(&mut tx, account).await
        })
        .await
    }

    /// A3: sets the plan.
    pub async fn set_account_plan(&self, command: SetAccountPlan) -> Result<PlanSet, LedgerError> {
        let request = fingerprint("SetAccountPlan", &command)?;
        let scope = &Tenant::Account(command.account_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            let mut account = existing_account(&mut tx, "account_id", &command.account_id, Lock::Update).await?;
            let (granted, movements) =
                account.set_plan(command.monthly_credits, command.billing_anchor, self.now_ms())?;
            tx.update_account(&account).await?;
            tx.append_journal(&super::journal(&command.idempotency_key, &movements), self.now_ms()).await?;
            let result = PlanSet { account: account_view(&mut tx, account).await?, granted };
            self.finish(tx, scope, &command.idempotency_key, result).await
        })
        .await
    }

    /// A2: adds bought credits to the top-up balance.
    pub async fn add_account_credits(&self, command: AddAccountCredits) -> Result<AccountView, LedgerError> {
        let request = fingerprint("AddAccountCredits", &command)?;
        let scope = &Tenant::Account(command.account_id.clone());
        self.retrying(|| async {
            let mut tx = fresh_or_replay!(self.begin_idempotent(scope, &command.idempotency_key, &request).await?);
            let mut account = existing_account(&mut tx, "account_id", &command.account_id, Lock::Update).await?;
            let movements = account.add_purchase(command.amount_credits)?;
            tx.update_account(&account).await?;
            tx.append_journal(&super::journal(&command.idempotency_key, &movements), self.now_ms()).await?;
            let result = account_view(&mut tx, account).await?;
            self.finish(tx, scope, &command.idempotency_key, result).await
        })
        .await
    }
}
