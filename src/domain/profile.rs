//! Product profiles: named groups of workspace members whose pool-access toggle decides who may
//! draw the overflow pool (C1 third link).

use serde::{Deserialize, Serialize};

use super::{AccountId, ProfileId, WorkspaceId};

/// Longest profile name, in bytes.
pub const MAX_PROFILE_NAME_BYTES: usize = 256;

/// A profile of a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// The id, unique within the workspace.
    pub id: ProfileId,
    /// Display name, 1..=256 bytes.
    pub name: String,
    /// Members may draw the overflow pool once their allowances are spent.
    pub pool_access: bool,
    /// Assigning a member writes MEMBER_ASSIGNED_TO_PROFILE.
    pub notify_on_assign: bool,
    /// Members draw the overflow pool only when the request says they may (`allow_overflow`).
    pub requires_consent: bool,
    /// Assigned members, in account order.
    pub members: Vec<AccountId>,
    /// When created (unix ms).
    pub created_at_ms: i64,
}

/// What a member may do with the overflow pool, from the profiles it is in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolAccess {
    /// In no pool-access profile.
    #[default]
    Denied,
    /// Only in pool-access profiles that require consent: draws need `allow_overflow`.
    NeedsConsent,
    /// In a pool-access profile that requires no consent.
    Granted,
}

impl PoolAccess {
    /// The access a member's profiles grant: any pool-access profile without consent grants it
    /// outright; otherwise any pool-access profile grants it with consent.
    pub fn of<'a>(profiles: impl IntoIterator<Item = &'a Profile>) -> PoolAccess {
        PoolAccess::from_grants(profiles.into_iter().filter(|p| p.pool_access).map(|p| p.requires_consent))
    }

    /// The same, from the consent flags of the pool-access profiles a member is in.
    pub fn from_grants(requires_consent: impl IntoIterator<Item = bool>) -> PoolAccess {
        requires_consent.into_iter().fold(PoolAccess::Denied, |access, consent| match (access, consent) {
            (PoolAccess::Granted, _) | (_, false) => PoolAccess::Granted,
            _ => PoolAccess::NeedsConsent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_is_granted_if_any_pool_access_profile_needs_no_consent() {
        assert_eq!(PoolAccess::from_grants([]), PoolAccess::Denied);
        assert_eq!(PoolAccess::from_grants([true, true]), PoolAccess::NeedsConsent);
        assert_eq!(PoolAccess::from_grants([true, false, true]), PoolAccess::Granted);
    }
}
