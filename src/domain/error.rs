//! What the rules refuse.

use super::{AccountId, AdminAction, ChargeState, Credits, Period, PoolKind, Role};

/// A rule of DESIGN §2 refused the change; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// C2, W1, W3: the buckets cannot cover the amount.
    #[error("insufficient credits: requested {requested}, available {available}")]
    InsufficientCredits {
        /// What was asked for.
        requested: Credits,
        /// What the buckets could give.
        available: Credits,
    },
    /// W2: the owner's pools would need more than the account holds at renewal.
    #[error(
        "pool sizes of all workspaces owned would total {owned_total} credits, more than the {renewal_capacity} the account holds at renewal (plan monthly credits + top-up)"
    )]
    PoolSizesExceedRenewal {
        /// Sum of pool sizes after the change.
        owned_total: Credits,
        /// Plan monthly credits at the next renewal plus current top-up balance.
        renewal_capacity: Credits,
    },
    /// M2: the raised allowance would reserve more than the pool has unallocated.
    #[error(
        "{pool} allowance would reserve {requested} credits but only {unallocated} are unallocated in the {pool} pool"
    )]
    AllowanceExceedsUnallocated {
        /// Which pool.
        pool: PoolKind,
        /// The member's remaining reservation after the change.
        requested: Credits,
        /// Pool balance minus other members' remaining reservations.
        unallocated: Credits,
    },
    /// M1: reviewers and clients hold no allowance.
    #[error("a member with role {role} holds no allowance")]
    RoleHoldsNoAllowance {
        /// The member's role.
        role: Role,
    },
    /// M1 and owner-only actions: the actor's role does not allow it.
    #[error("actor {actor} ({}) may not {action}", role.map_or("not a member".to_owned(), |r| format!("role {r}")))]
    NotPermitted {
        /// Who tried.
        actor: AccountId,
        /// Their role in the workspace, if a member.
        role: Option<Role>,
        /// What they tried.
        action: AdminAction,
    },
    /// M1: reviewers and clients cannot consume.
    #[error("a member with role {role} cannot consume credits")]
    RoleCannotConsume {
        /// The member's role.
        role: Role,
    },
    /// C5: only an open hold can be committed or released.
    #[error("the hold is {state}, not open")]
    HoldNotOpen {
        /// Its state.
        state: ChargeState,
    },
    /// C5b, C4: a hold taken before its pool renewed (its monthly pool, or for a further overflow
    /// draw its overflow pool's contract period) can be committed for at most what it holds: the
    /// extra would be new-period credits or units on a charge of the old period.
    #[error("the hold was taken before its pool renewed: commit at most the {held} credits it holds")]
    HoldFromEarlierCycle {
        /// What the hold holds.
        held: Credits,
    },
    /// C5b: the member has as many open holds as allowed.
    #[error("{open} holds are open, the most allowed per member")]
    TooManyOpenHolds {
        /// Open holds now.
        open: u32,
    },
    /// C6: refunds never exceed what was consumed.
    #[error("refund of {requested} exceeds the {refundable} credits not yet refunded")]
    RefundExceedsConsumed {
        /// Asked for.
        requested: Credits,
        /// Consumed and not yet refunded.
        refundable: Credits,
    },
    /// An open hold has spent nothing yet: release it instead.
    #[error("the consumption is an open hold; release it instead of refunding")]
    RefundOfOpenHold,
    /// The owner's membership cannot be removed or changed.
    #[error("the workspace owner cannot be removed or given another role")]
    OwnerIsPermanent,
    /// A workspace has exactly one owner, its creator.
    #[error("role OWNER cannot be assigned; a workspace has one owner, its creator")]
    OwnerRoleNotAssignable,
    /// R1: only an account with a plan renews.
    #[error("the account has no plan to renew")]
    NoPlan,
    /// R6: periods only move forward.
    #[error("period {requested} is not after the current period {current}")]
    PeriodNotAfter {
        /// The account's current period.
        current: Period,
        /// The period asked for.
        requested: Period,
    },
    /// R6: a scheduled renewal found the period not yet due (another replica renewed first).
    #[error("period {requested} is not due yet")]
    RenewalNotDue {
        /// The period asked for.
        requested: Period,
    },
    /// C1, consent: the member's profiles require consent before the overflow pool is drawn,
    /// and the request did not give it (`allow_overflow`).
    #[error(
        "the overflow pool would lend {credits} credits ({units} units); the request must allow it (allow_overflow)"
    )]
    OverflowNeedsConsent {
        /// Credits the overflow pool would lend.
        credits: Credits,
        /// Units they would cost.
        units: i64,
    },
    /// A balance would pass i64::MAX.
    #[error("the balance would exceed the largest storable amount")]
    BalanceOverflow,
}
