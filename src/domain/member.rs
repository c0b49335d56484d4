//! Members, roles and allowances (M1–M3).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{AccountId, Credits, DomainError, WorkspaceId};

/// A member's role in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Owns the workspace.
    Owner,
    /// Manages members and allowances.
    Admin,
    /// Creates visuals.
    Editor,
    /// Reviews; holds no allowance.
    Reviewer,
    /// A client; holds no allowance.
    Client,
}

impl Role {
    /// M1: only these roles hold allowances and consume.
    pub fn holds_allowance(self) -> bool {
        matches!(self, Role::Owner | Role::Admin | Role::Editor)
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Reviewer => "reviewer",
            Role::Client => "client",
        }
    }

    /// Parses the stored name.
    pub fn from_stored(value: &str) -> Option<Role> {
        [Role::Owner, Role::Admin, Role::Editor, Role::Reviewer, Role::Client]
            .into_iter()
            .find(|role| role.as_str() == value)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().to_uppercase())
    }
}

/// An admin action that needs a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminAction {
    /// Add, remove and change members, roles, allowances, thresholds, profiles (OWNER, ADMIN).
    ManageMembers,
    /// Set the pool size, top up, configure the overflow pool (OWNER only).
    ManageFunding,
}

impl fmt::Display for AdminAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AdminAction::ManageMembers => "manage members and allowances (needs OWNER or ADMIN)",
            AdminAction::ManageFunding => "manage the workspace's funding (needs OWNER)",
        })
    }
}

/// M1: may the actor (its membership, if any) perform `action`?
pub fn authorize(actor: &AccountId, membership: Option<&Member>, action: AdminAction) -> Result<(), DomainError> {
    let role = membership.map(|member| member.role);
    let allowed = match (action, role) {
        (AdminAction::ManageMembers, Some(Role::Owner | Role::Admin)) => true,
        (AdminAction::ManageFunding, Some(Role::Owner)) => true,
        (AdminAction::ManageMembers | AdminAction::ManageFunding, _) => false,
    };
    if allowed { Ok(()) } else { Err(DomainError::NotPermitted { actor: actor.clone(), role, action }) }
}

/// Which workspace pool an allowance reserves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolKind {
    /// The monthly pool.
    Monthly,
    /// The top-up pool.
    TopUp,
}

impl fmt::Display for PoolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolKind::Monthly => "monthly",
            PoolKind::TopUp => "top-up",
        })
    }
}

/// A member's allowance out of one pool and what was used of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowanceState {
    /// The allowance.
    pub allowance: Credits,
    /// Used against it.
    pub used: Credits,
}

impl AllowanceState {
    /// `max(0, allowance - used)`: the member's reservation out of the pool (M2, M3).
    pub fn remaining(self) -> Credits {
        self.allowance.saturating_sub(self.used)
    }
}

/// A pool's balance and what other members hold reserved out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolReservations {
    /// The pool's balance.
    pub pool: Credits,
    /// Sum of the other members' remaining reservations.
    pub reserved_by_others: Credits,
}

impl PoolReservations {
    /// What a member may still reserve: pool balance minus others' reservations.
    pub fn unallocated(self) -> Credits {
        self.pool.saturating_sub(self.reserved_by_others)
    }
}

/// An account's membership of a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// The member's account.
    pub account_id: AccountId,
    /// The role.
    pub role: Role,
    /// Monthly allowance (monthly pool).
    pub monthly: AllowanceState,
    /// Top-up allowance (top-up pool).
    pub top_up: AllowanceState,
    /// When the member joined (unix ms).
    pub created_at_ms: i64,
    /// Which of the workspace's memberships this is (see [`Workspace::admit`]): a charge made
    /// by an earlier membership of the same account never changes this one's usage.
    ///
    /// [`Workspace::admit`]: super::Workspace::admit
    #[serde(default)]
    pub membership: i64,
}

impl Member {
    /// A new member with zero allowances.
    pub fn new(workspace_id: WorkspaceId, account_id: AccountId, role: Role, now_ms: i64) -> Member {
        Member {
            workspace_id,
            account_id,
            role,
            monthly: AllowanceState::default(),
            top_up: AllowanceState::default(),
            created_at_ms: now_ms,
            membership: 0,
        }
    }

    /// A new member added by an admin: any role but OWNER. [`Workspace::admit`] numbers it.
    ///
    /// [`Workspace::admit`]: super::Workspace::admit
    pub(super) fn join(
        workspace_id: WorkspaceId,
        account_id: AccountId,
        role: Role,
        now_ms: i64,
    ) -> Result<Member, DomainError> {
        if role == Role::Owner {
            return Err(DomainError::OwnerRoleNotAssignable);
        }
        Ok(Member::new(workspace_id, account_id, role, now_ms))
    }

    /// The owner's membership can neither be removed nor changed.
    pub fn ensure_not_owner(&self) -> Result<(), DomainError> {
        if self.role == Role::Owner { Err(DomainError::OwnerIsPermanent) } else { Ok(()) }
    }

    /// Changes the role; a role that holds no allowance clears both allowances (M1), which frees
    /// their reservations.
    pub fn set_role(&mut self, role: Role) -> Result<(), DomainError> {
        self.ensure_not_owner()?;
        if role == Role::Owner {
            return Err(DomainError::OwnerRoleNotAssignable);
        }
        self.role = role;
        if !role.holds_allowance() {
            self.monthly.allowance = Credits::ZERO;
            self.top_up.allowance = Credits::ZERO;
        }
        Ok(())
    }

    /// M1–M3: sets both allowances. Raising a reservation may take at most the pool's
    /// unallocated credits; lowering is always allowed, also below what was used.
    pub fn set_allowances(
        &mut self,
        monthly: Credits,
        top_up: Credits,
        monthly_pool: PoolReservations,
        top_up_pool: PoolReservations,
    ) -> Result<(), DomainError> {
        let sets_any = !monthly.is_zero() || !top_up.is_zero();
        if sets_any && !self.role.holds_allowance() {
            return Err(DomainError::RoleHoldsNoAllowance { role: self.role });
        }
        let next_monthly = AllowanceState { allowance: monthly, ..self.monthly };
        let next_top_up = AllowanceState { allowance: top_up, ..self.top_up };
        check_reservation(PoolKind::Monthly, self.monthly, next_monthly, monthly_pool)?;
        check_reservation(PoolKind::TopUp, self.top_up, next_top_up, top_up_pool)?;
        self.monthly = next_monthly;
        self.top_up = next_top_up;
        Ok(())
    }
}

fn check_reservation(
    pool: PoolKind,
    current: AllowanceState,
    next: AllowanceState,
    reservations: PoolReservations,
) -> Result<(), DomainError> {
    let requested = next.remaining();
    let unallocated = reservations.unallocated();
    if requested > current.remaining() && requested > unallocated {
        return Err(DomainError::AllowanceExceedsUnallocated { pool, requested, unallocated });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credits(value: i64) -> Credits {
        Credits::new(value).unwrap()
    }

    fn member(role: Role) -> Member {
        Member::new(WorkspaceId::parse("w").unwrap(), AccountId::parse("c").unwrap(), role, 0)
    }

    fn pool(pool: i64, others: i64) -> PoolReservations {
        PoolReservations { pool: credits(pool), reserved_by_others: credits(others) }
    }

    #[test]
    fn allowance_can_take_exactly_the_unallocated_credits() {
        // DESIGN M2: monthly pool 500, A 150, B 150 → 200 unallocated.
        let mut c = member(Role::Editor);
        let refused = c.set_allowances(credits(201), Credits::ZERO, pool(500, 300), pool(0, 0));
        assert_eq!(
            refused,
            Err(DomainError::AllowanceExceedsUnallocated {
                pool: PoolKind::Monthly,
                requested: credits(201),
                unallocated: credits(200)
            })
        );
        assert_eq!(c.monthly.allowance, Credits::ZERO);
        c.set_allowances(credits(200), Credits::ZERO, pool(500, 300), pool(0, 0)).unwrap();
        assert_eq!(c.monthly.remaining(), credits(200));
    }

    #[test]
    fn lowering_an_allowance_is_allowed_even_below_used_and_when_over_allocated() {
        let mut c = member(Role::Editor);
        c.monthly = AllowanceState { allowance: credits(100), used: credits(80) };
        // The pool is over-allocated (e.g. after a failed renewal): lowering still works.
        c.set_allowances(credits(50), Credits::ZERO, pool(0, 1_000), pool(0, 0)).unwrap();
        assert_eq!(c.monthly.remaining(), Credits::ZERO);
        assert_eq!(c.monthly.used, credits(80));
    }

    #[test]
    fn reviewers_and_clients_hold_no_allowance() {
        for role in [Role::Reviewer, Role::Client] {
            let mut m = member(role);
            assert_eq!(
                m.set_allowances(credits(1), Credits::ZERO, pool(10, 0), pool(10, 0)),
                Err(DomainError::RoleHoldsNoAllowance { role })
            );
            m.set_allowances(Credits::ZERO, Credits::ZERO, pool(10, 0), pool(10, 0)).unwrap();
        }
    }

    #[test]
    fn only_owner_and_admin_manage_members_and_only_owner_manages_funding() {
        let actor = AccountId::parse("actor").unwrap();
        for role in [Role::Owner, Role::Admin, Role::Editor, Role::Reviewer, Role::Client] {
            let m = member(role);
            let manage = authorize(&actor, Some(&m), AdminAction::ManageMembers).is_ok();
            let fund = authorize(&actor, Some(&m), AdminAction::ManageFunding).is_ok();
            assert_eq!(manage, matches!(role, Role::Owner | Role::Admin), "{role}");
            assert_eq!(fund, role == Role::Owner, "{role}");
        }
        assert!(authorize(&actor, None, AdminAction::ManageMembers).is_err());
    }

    #[test]
    fn demoting_to_reviewer_clears_allowances_and_owner_is_permanent() {
        let mut m = member(Role::Editor);
        m.monthly.allowance = credits(10);
        m.set_role(Role::Reviewer).unwrap();
        assert_eq!(m.monthly.allowance, Credits::ZERO);
        assert_eq!(m.set_role(Role::Owner), Err(DomainError::OwnerRoleNotAssignable));
        let mut owner = member(Role::Owner);
        assert_eq!(owner.set_role(Role::Admin), Err(DomainError::OwnerIsPermanent));
    }
}
