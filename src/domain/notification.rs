//! Events written to the outbox in the same transaction as the change that causes them.

use serde::{Deserialize, Serialize};

use super::{AccountId, Credits, Period, Renewal, WorkspaceId};

/// What a notification reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationKind {
    /// A balance crossed its threshold downward.
    LowBalance,
    /// A renewal could not fund every pool.
    RenewalFailed,
    /// A renewal funded every pool.
    RenewalSucceeded,
    /// The overflow pool ran into overage.
    OverageStarted,
    /// A member was assigned to a notifying profile.
    MemberAssignedToProfile,
    /// A hold expired.
    ReservationExpired,
}

impl NotificationKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::LowBalance => "low_balance",
            NotificationKind::RenewalFailed => "renewal_failed",
            NotificationKind::RenewalSucceeded => "renewal_succeeded",
            NotificationKind::OverageStarted => "overage_started",
            NotificationKind::MemberAssignedToProfile => "member_assigned_to_profile",
            NotificationKind::ReservationExpired => "reservation_expired",
        }
    }
}

/// Details by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationPayload {
    /// RENEWAL_FAILED and RENEWAL_SUCCEEDED.
    Renewal {
        /// The period renewed.
        period: Period,
        /// The owner's workspaces.
        workspace_ids: Vec<WorkspaceId>,
        /// Credits the pools needed.
        required_credits: Credits,
        /// Credits the account had after its refresh.
        available_credits: Credits,
    },
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The kind.
    pub kind: NotificationKind,
    /// The account concerned (the owner, for workspace events).
    pub account_id: AccountId,
    /// The workspace concerned, when any.
    pub workspace_id: Option<WorkspaceId>,
    /// The member concerned, when any.
    pub member_account_id: Option<AccountId>,
    /// Details.
    pub payload: NotificationPayload,
}

impl Notification {
    /// R2/R3: the renewal's outcome, for the owner.
    pub fn renewal(account_id: &AccountId, renewal: &Renewal) -> Notification {
        Notification {
            kind: if renewal.succeeded { NotificationKind::RenewalSucceeded } else { NotificationKind::RenewalFailed },
            account_id: account_id.clone(),
            workspace_id: None,
            member_account_id: None,
            payload: NotificationPayload::Renewal {
                period: renewal.period,
                workspace_ids: renewal.workspace_ids.clone(),
                required_credits: renewal.required,
                available_credits: renewal.available,
            },
        }
    }
}
