//! The rules of DESIGN §2 as pure functions over loaded state: no I/O, no SQL, no tonic.
//!
//! Every decision returns the new state and the journal [`Movement`]s that explain it, so the
//! ledger layer only has to persist what the domain decided.

mod account;
mod charge;
mod credits;
mod error;
mod ids;
mod journal;
mod member;
mod notification;
mod overflow;
mod period;
mod profile;
mod renewal;
mod split;
mod wallet;
mod workspace;

#[cfg(test)]
mod properties;

pub use account::{Account, BillingAnchor, Plan};
pub use charge::{Captured, Charge, ChargeState};
pub use credits::{Credits, MAX_AMOUNT_CREDITS};
pub use error::DomainError;
pub use ids::{AccountId, ChargeKey, IdError, IdempotencyKey, MAX_ID_BYTES, ProfileId, WorkspaceId};
pub use journal::{BucketRef, Cause, Movement};
pub use member::{AdminAction, AllowanceState, Member, PoolKind, PoolReservations, Role, authorize};
pub use notification::{Notification, NotificationKind, NotificationPayload, low_balance_crossings, overage_started};
pub use overflow::{MAX_RATIO_TERM, OverflowPool, OverflowSettings, OverflowTake, OverflowUnits, UnitRatio};
pub use period::{Period, PeriodError};
pub use profile::{MAX_PROFILE_NAME_BYTES, PoolAccess, Profile};
pub use renewal::{Renewal, renew};
pub use split::{DrawBucket, Split};
pub use wallet::{Drawn, GivenBack, Origin, Tenant, Wallet};
pub use workspace::{LowBalanceThresholds, PoolSizeChange, Workspace};
