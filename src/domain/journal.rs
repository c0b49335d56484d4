//! Movements of credits between buckets: the journal is the truth, balances are its cache.

use serde::{Deserialize, Serialize};

use super::{AccountId, Credits, DrawBucket, OverflowUnits, WorkspaceId};

/// One end of a movement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BucketRef {
    /// Outside the system: grants and purchases come from here.
    External,
    /// An account's monthly credits.
    AccountMonthly(AccountId),
    /// An account's top-up credits.
    AccountTopUp(AccountId),
    /// A workspace monthly pool.
    WorkspaceMonthly(WorkspaceId),
    /// A workspace top-up pool.
    WorkspaceTopUp(WorkspaceId),
    /// A workspace's enterprise overflow pool (C4). It lends credits to pool-access members,
    /// billed by units: its balance is minus the credits it has lent and not got back.
    WorkspaceOverflow(WorkspaceId),
    /// Credits held by a workspace's open holds.
    WorkspaceHeld(WorkspaceId),
    /// Credits held by an account's open personal holds.
    AccountHeld(AccountId),
    /// Spent on generation (refunds come back from here).
    Consumed,
    /// Expired at a renewal.
    Expired,
}

impl BucketRef {
    /// The bucket's stored name.
    pub fn kind(&self) -> &'static str {
        match self {
            BucketRef::External => "external",
            BucketRef::AccountMonthly(_) => "account_monthly",
            BucketRef::AccountTopUp(_) => "account_top_up",
            BucketRef::WorkspaceMonthly(_) => "workspace_monthly",
            BucketRef::WorkspaceTopUp(_) => "workspace_top_up",
            BucketRef::WorkspaceOverflow(_) => "workspace_overflow",
            BucketRef::WorkspaceHeld(_) => "workspace_held",
            BucketRef::AccountHeld(_) => "account_held",
            BucketRef::Consumed => "consumed",
            BucketRef::Expired => "expired",
        }
    }

    /// The account or workspace that owns the bucket; `None` for external and sinks.
    pub fn owner_id(&self) -> Option<&str> {
        match self {
            BucketRef::AccountMonthly(id) | BucketRef::AccountTopUp(id) | BucketRef::AccountHeld(id) => {
                Some(id.as_str())
            }
            BucketRef::WorkspaceMonthly(id)
            | BucketRef::WorkspaceTopUp(id)
            | BucketRef::WorkspaceOverflow(id)
            | BucketRef::WorkspaceHeld(id) => Some(id.as_str()),
            BucketRef::External | BucketRef::Consumed | BucketRef::Expired => None,
        }
    }

    fn workspace(&self) -> Option<&WorkspaceId> {
        match self {
            BucketRef::WorkspaceMonthly(id)
            | BucketRef::WorkspaceTopUp(id)
            | BucketRef::WorkspaceOverflow(id)
            | BucketRef::WorkspaceHeld(id) => Some(id),
            _ => None,
        }
    }
}

/// Why credits moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    /// A plan's monthly credits granted to an account.
    PlanGrant,
    /// Credits bought.
    Purchase,
    /// An account funding a workspace monthly pool.
    PoolFunding,
    /// An account topping up a workspace top-up pool.
    WorkspaceTopUp,
    /// A one-shot charge for a generation.
    Consume,
    /// Credits taken into a hold.
    Hold,
    /// A hold captured by Commit (and any extra drawn with it).
    Capture,
    /// A hold, or the uncaptured rest of one, returned.
    Release,
    /// A hold returned by the service after its TTL.
    Expiry,
    /// A consumption refunded.
    Refund,
}

impl Cause {
    /// Every cause.
    pub const ALL: [Cause; 10] = [
        Cause::PlanGrant,
        Cause::Purchase,
        Cause::PoolFunding,
        Cause::WorkspaceTopUp,
        Cause::Consume,
        Cause::Hold,
        Cause::Capture,
        Cause::Release,
        Cause::Expiry,
        Cause::Refund,
    ];

    /// Parses the stored name.
    pub fn from_stored(value: &str) -> Option<Cause> {
        Cause::ALL.into_iter().find(|cause| cause.as_str() == value)
    }

    /// The cause's stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::PlanGrant => "plan_grant",
            Cause::Purchase => "purchase",
            Cause::PoolFunding => "pool_funding",
            Cause::WorkspaceTopUp => "workspace_top_up",
            Cause::Consume => "consume",
            Cause::Hold => "hold",
            Cause::Capture => "capture",
            Cause::Release => "release",
            Cause::Expiry => "expiry",
            Cause::Refund => "refund",
        }
    }
}

/// A movement of a positive amount of credits from one bucket to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    /// Where the credits came from.
    pub from: BucketRef,
    /// Where they went.
    pub to: BucketRef,
    /// How many; never zero.
    pub amount: Credits,
    /// Why.
    pub cause: Cause,
    /// The member it was for, when any.
    pub member: Option<AccountId>,
    /// The workspace or account whose transaction made it, when its buckets do not say (a
    /// forfeit runs from `consumed` to `expired`, neither of which has an owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The link of the draw chain the credits belong to, for movements of a charge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<DrawBucket>,
    /// Overflow units the movement took from (or gave back to) the overflow pool.
    #[serde(default, skip_serializing_if = "OverflowUnits::is_zero")]
    pub units: OverflowUnits,
}

impl Movement {
    /// The key the entry is stored under: the workspace it touches, else the account.
    ///
    /// This is the distribution key of the journal (DESIGN §5): a movement that touches a
    /// workspace lives with that workspace, one within an account lives with the account.
    pub fn ledger_scope_id(&self) -> &str {
        if let Some(scope) = &self.scope {
            return scope;
        }
        self.from
            .workspace()
            .or_else(|| self.to.workspace())
            .map(WorkspaceId::as_str)
            .or_else(|| self.from.owner_id())
            .or_else(|| self.to.owner_id())
            .unwrap_or("")
    }
}
