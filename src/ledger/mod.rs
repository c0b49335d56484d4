//! The use cases. Each is one transaction script, written once over [`StoreTx`]: claim the
//! idempotency key, lock rows in the fixed order (account → workspace → member), load, let the
//! domain decide, write state + journal + idempotency record, commit. A conflict (deadlock,
//! serialization failure) reruns the whole script, a bounded number of times.

#[macro_use]
mod idempotency;
mod accounts;
mod batch;
mod charges;
mod error;
mod members;
mod notifications;
mod profiles;
mod renewals;
mod reports;
mod views;
mod workspaces;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tracing::Instrument as _;

pub use accounts::{AddAccountCredits, CreateAccount, PlanSet, SetAccountPlan};
pub use charges::{Balance, ChargeOutcome, Commit, Consume, HoldPage, Refund, Release, Reserve};
pub use error::LedgerError;
pub use members::{AddMember, AllowanceSet, MemberRemoved, RemoveMember, SetMemberAllowance, SetMemberRole};
pub use notifications::{SetLowBalanceThresholds, StreamBounds};
pub use profiles::{ConfigureOverflowPool, CreateProfile, ProfileChange, UpdateProfile};
pub use renewals::{FundWorkspacePools, PoolsFunded, RenewAccount, Renewed};
pub use reports::{MemberUsage, ReportRange, UsageReport};
pub use views::{AccountView, MemberView, Page, WorkspaceView};
pub use workspaces::{CreateWorkspace, PoolSizeSet, SetPoolSize, TopUpWorkspace, ToppedUp};

use crate::store::{LedgerCheck, Store};

/// Journal entries for `movements`, all caused by the request keyed `reference`.
fn journal<'a>(
    reference: &'a crate::domain::IdempotencyKey,
    movements: &'a [crate::domain::Movement],
) -> Vec<(&'a crate::domain::IdempotencyKey, &'a crate::domain::Movement)> {
    movements.iter().map(|movement| (reference, movement)).collect()
}

/// Where the ledger reads the time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock tests move by hand.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: std::sync::atomic::AtomicI64,
}

impl ManualClock {
    /// A clock standing at `now_ms`.
    pub fn starting_at(now_ms: i64) -> ManualClock {
        ManualClock { now_ms: std::sync::atomic::AtomicI64::new(now_ms) }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by_ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now_ms.fetch_add(by_ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The database's clock read through a local one: the local time plus an offset that every
/// [`calibrate`](Self::calibrate) measures. Replicas whose own clocks disagree then agree on
/// when holds expire, records are pruned and renewals fall due.
pub struct DatabaseClock {
    local: Arc<dyn Clock>,
    offset_ms: std::sync::atomic::AtomicI64,
}

impl DatabaseClock {
    /// A clock reading `local` until the first calibration.
    pub fn new(local: Arc<dyn Clock>) -> DatabaseClock {
        DatabaseClock { local, offset_ms: std::sync::atomic::AtomicI64::new(0) }
    }

    /// The local clock's time, for timing a read of the database's clock.
    pub fn local_ms(&self) -> i64 {
        self.local.now_ms()
    }

    /// Takes the offset from a read of the database's clock (`database_ms`) made between the
    /// local times `before_ms` and `after_ms`, and answers it. The read is assumed to happen
    /// halfway; a change within that uncertainty is ignored, so time does not jitter.
    pub fn calibrate(&self, before_ms: i64, database_ms: i64, after_ms: i64) -> i64 {
        let midpoint = before_ms.saturating_add(after_ms.saturating_sub(before_ms) / 2);
        let measured = database_ms.saturating_sub(midpoint);
        let uncertainty = after_ms.saturating_sub(before_ms) / 2 + 1;
        let current = self.offset_ms.load(std::sync::atomic::Ordering::Relaxed);
        if measured.abs_diff(current) > uncertainty.unsigned_abs() {
            self.offset_ms.store(measured, std::sync::atomic::Ordering::Relaxed);
            return measured;
        }
        current
    }
}

impl Clock for DatabaseClock {
    fn now_ms(&self) -> i64 {
        self.local.now_ms().saturating_add(self.offset_ms.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Most times one script is rerun after a conflict before the caller gets UNAVAILABLE.
pub const MAX_CONFLICT_RETRIES: usize = 10;
/// Largest page a list returns.
pub const MAX_PAGE_SIZE: u32 = 1_000;
/// Page size when the caller asks for none.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// Limits and tuning of the use cases, validated from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSettings {
    /// C5b: most open holds one member (or personal account) may have.
    pub max_open_holds_per_member: u32,
    /// TTL of a hold whose Reserve asks for none.
    pub default_hold_ttl_seconds: u32,
    /// Longest TTL a Reserve may ask for.
    pub max_hold_ttl_seconds: u32,
    /// Most hot-path calls applied in one transaction.
    pub max_batch_calls: usize,
    /// Most scopes (workspaces, personal accounts) whose calls share one transaction.
    pub max_batch_scopes: usize,
    /// Most batch transactions in flight at once.
    pub max_batch_transactions: usize,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        LedgerSettings {
            max_open_holds_per_member: 100,
            default_hold_ttl_seconds: 300,
            max_hold_ttl_seconds: 86_400,
            max_batch_calls: 256,
            max_batch_scopes: 32,
            max_batch_transactions: 2,
        }
    }
}

/// The use cases over one store.
pub struct Ledger<S> {
    store: S,
    clock: Arc<dyn Clock>,
    settings: Arc<LedgerSettings>,
    batcher: Arc<batch::Batcher>,
    outbox_written: Arc<tokio::sync::Notify>,
    /// One full-journal check at a time: a second caller waits for the first.
    verifying: Arc<tokio::sync::Mutex<()>>,
}

impl<S: Clone> Clone for Ledger<S> {
    fn clone(&self) -> Self {
        Ledger {
            store: self.store.clone(),
            clock: Arc::clone(&self.clock),
            settings: Arc::clone(&self.settings),
            batcher: Arc::clone(&self.batcher),
            outbox_written: Arc::clone(&self.outbox_written),
            verifying: Arc::clone(&self.verifying),
        }
    }
}

impl<S: Store> Ledger<S> {
    /// A ledger over `store` reading time from `clock`.
    pub fn new(store: S, clock: Arc<dyn Clock>, settings: LedgerSettings) -> Ledger<S> {
        let batcher = Arc::new(batch::Batcher::new(batch::BatchLimits {
            calls: settings.max_batch_calls,
            scopes: settings.max_batch_scopes,
            transactions: store.batches_in_flight(settings.max_batch_transactions),
        }));
        Ledger {
            store,
            clock,
            settings: Arc::new(settings),
            batcher,
            outbox_written: Arc::default(),
            verifying: Arc::default(),
        }
    }

    /// Signalled after a transaction that wrote notifications commits (the publisher waits on it).
    pub fn outbox_written(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.outbox_written)
    }

    /// The limits in force.
    pub fn settings(&self) -> &LedgerSettings {
        &self.settings
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// L1: recomputes every balance from the journal.
    pub async fn verify_ledger(&self) -> Result<LedgerCheck, LedgerError> {
        let _only_one = self.verifying.lock().await;
        Ok(self.store.verify_ledger().await?)
    }

    /// The database gauges the metrics report.
    pub async fn store_gauges(&self) -> Result<crate::store::StoreGauges, LedgerError> {
        Ok(self.store.gauges().await?)
    }

    /// Commits `tx`, and wakes the publisher when the transaction wrote events: every script
    /// that writes to the outbox commits here, so none can forget the wake-up.
    async fn commit_transaction(&self, tx: S::Tx, wrote_events: bool) -> Result<(), LedgerError> {
        crate::store::StoreTx::commit(tx).await?;
        if wrote_events {
            self.outbox_written.notify_one();
        }
        Ok(())
    }

    /// The ledger's time (unix ms).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Runs `script` until it commits, fails for good, or has conflicted too often.
    async fn retrying<T, F, Fut>(&self, script: F) -> Result<T, LedgerError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, LedgerError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(2))
            .with_max_delay(Duration::from_millis(100))
            .with_max_times(MAX_CONFLICT_RETRIES)
            .with_jitter();
        let mut script = script;
        let mut attempt = 0_u32;
        // One span per database transaction, under the RPC's or the batch's span.
        let traced = move || {
            attempt += 1;
            script().instrument(tracing::info_span!("db.transaction", attempt))
        };
        traced.retry(backoff).sleep(tokio::time::sleep).when(LedgerError::is_conflict).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Clock, DatabaseClock, ManualClock};

    #[test]
    fn the_database_clock_follows_the_measured_offset_and_ignores_jitter_within_the_round_trip() {
        let clock = DatabaseClock::new(Arc::new(ManualClock::starting_at(1_000_000)));
        assert_eq!(clock.now_ms(), 1_000_000, "the local time until calibrated");
        // The database answered 7,200,000 ms behind, read between local 1,000,000 and 1,000,010.
        assert_eq!(clock.calibrate(1_000_000, 1_000_005 - 7_200_000, 1_000_010), -7_200_000);
        assert_eq!(clock.now_ms(), 1_000_000 - 7_200_000);
        // A second read 3 ms off, within its 10 ms round trip: kept as it was.
        assert_eq!(clock.calibrate(1_000_000, 1_000_008 - 7_200_000, 1_000_010), -7_200_000);
        // The database's clock stepped 50 ms: followed.
        assert_eq!(clock.calibrate(1_000_000, 1_000_055 - 7_200_000, 1_000_010), -7_199_950);
    }
}
