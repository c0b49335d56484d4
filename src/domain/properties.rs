//! Property tests: random sequences of admin operations on one owner, three workspaces and
//! their members, checked after every step against the journal the domain produced.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    SetPlan(i64),
    Purchase(i64),
    SetPoolSize { workspace: usize, size: i64 },
    TopUp { workspace: usize, amount: i64 },
    SetAllowances { workspace: usize, member: usize, monthly: i64, top_up: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2_000i64).prop_map(Op::SetPlan),
        (1..1_000i64).prop_map(Op::Purchase),
        (0..3usize, 0..1_500i64).prop_map(|(workspace, size)| Op::SetPoolSize { workspace, size }),
        (0..3usize, 1..500i64).prop_map(|(workspace, amount)| Op::TopUp { workspace, amount }),
        (0..3usize, 0..3usize, 0..600i64, 0..300i64)
            .prop_map(|(workspace, member, monthly, top_up)| Op::SetAllowances { workspace, member, monthly, top_up }),
    ]
}

fn credits(value: i64) -> Credits {
    Credits::new(value).expect("non-negative")
}

/// Sums movements per bucket, the way VerifyLedger does.
#[derive(Default)]
struct Journal(HashMap<(&'static str, String), i64>);

impl Journal {
    fn apply(&mut self, movements: &[Movement]) {
        for movement in movements {
            assert!(!movement.amount.is_zero(), "zero movements are never journaled");
            if let Some(owner) = movement.from.owner_id() {
                *self.0.entry((movement.from.kind(), owner.to_owned())).or_default() -= movement.amount.get();
            }
            if let Some(owner) = movement.to.owner_id() {
                *self.0.entry((movement.to.kind(), owner.to_owned())).or_default() += movement.amount.get();
            }
        }
    }

    fn balance(&self, kind: &'static str, owner: &str) -> i64 {
        self.0.get(&(kind, owner.to_owned())).copied().unwrap_or(0)
    }
}

proptest! {
    #[test]
    fn admin_operations_conserve_credits_and_keep_every_invariant(ops in proptest::collection::vec(op(), 1..60)) {
        let owner_id = AccountId::parse("owner").expect("id");
        let mut owner = Account::new(owner_id.clone(), 0);
        let mut workspaces: Vec<Workspace> = (0..3)
            .map(|i| Workspace::new(WorkspaceId::parse(format!("w{i}")).expect("id"), owner_id.clone(), 0))
            .collect();
        let mut members: Vec<Vec<Member>> = workspaces
            .iter()
            .map(|w| (0..3).map(|m| Member::new(w.id.clone(), AccountId::parse(format!("m{m}")).expect("id"), Role::Editor, 0)).collect())
            .collect();
        let mut journal = Journal::default();
        let mut granted = 0i64;

        for op in ops {
            match op {
                Op::SetPlan(monthly) => {
                    if let Ok((grant, movements)) = owner.set_plan(credits(monthly), None, 0) {
                        granted += grant.get();
                        journal.apply(&movements);
                    }
                }
                Op::Purchase(amount) => {
                    let movements = owner.add_purchase(credits(amount)).expect("purchases fit");
                    granted += amount;
                    journal.apply(&movements);
                }
                Op::SetPoolSize { workspace, size } => {
                    let others: i64 = workspaces.iter().enumerate().filter(|(i, _)| *i != workspace).map(|(_, w)| w.pool_size.get()).sum();
                    let before = (owner.clone(), workspaces[workspace].clone());
                    match workspaces[workspace].set_pool_size(&mut owner, credits(size), credits(others)) {
                        Ok((_, movements)) => {
                            journal.apply(&movements);
                            if size > before.1.pool_size.get() {
                                // W2: a raise keeps every pool size within what renewal brings.
                                prop_assert!(others + size <= before.0.renewal_capacity().get());
                            }
                        }
                        Err(_) => {
                            prop_assert_eq!(&owner, &before.0, "a refused change leaves the owner as it was");
                            prop_assert_eq!(&workspaces[workspace], &before.1);
                        }
                    }
                }
                Op::TopUp { workspace, amount } => {
                    if let Ok((_, movements)) = workspaces[workspace].top_up(&mut owner, credits(amount)) {
                        journal.apply(&movements);
                    }
                }
                Op::SetAllowances { workspace, member, monthly, top_up } => {
                    let pool = &workspaces[workspace];
                    let others = |f: fn(&Member) -> Credits| -> Credits {
                        credits(members[workspace].iter().enumerate().filter(|(i, _)| *i != member).map(|(_, m)| f(m).get()).sum())
                    };
                    let monthly_pool = PoolReservations { pool: pool.monthly_pool, reserved_by_others: others(|m| m.monthly.remaining()) };
                    let top_up_pool = PoolReservations { pool: pool.top_up_pool, reserved_by_others: others(|m| m.top_up.remaining()) };
                    let before = members[workspace][member].clone();
                    let result = members[workspace][member].set_allowances(credits(monthly), credits(top_up), monthly_pool, top_up_pool);
                    let after = &members[workspace][member];
                    if result.is_ok() {
                        // M2: a raised reservation fits in what the others left unallocated.
                        if after.monthly.remaining() > before.monthly.remaining() {
                            prop_assert!(after.monthly.remaining() <= monthly_pool.unallocated());
                        }
                        if after.top_up.remaining() > before.top_up.remaining() {
                            prop_assert!(after.top_up.remaining() <= top_up_pool.unallocated());
                        }
                    } else {
                        prop_assert_eq!(&before, after, "a refused change leaves the member as it was");
                    }
                }
            }

            // L1: every balance equals its journal; credits are neither made nor lost.
            prop_assert_eq!(owner.monthly.get(), journal.balance("account_monthly", "owner"));
            prop_assert_eq!(owner.top_up.get(), journal.balance("account_top_up", "owner"));
            let mut held = owner.balance().get();
            for w in &workspaces {
                prop_assert_eq!(w.monthly_pool.get(), journal.balance("workspace_monthly", w.id.as_str()));
                prop_assert_eq!(w.top_up_pool.get(), journal.balance("workspace_top_up", w.id.as_str()));
                // Nothing draws the pools yet, so each monthly pool holds exactly what funded it.
                prop_assert_eq!(w.monthly_pool, w.funded_pool_size);
                held += w.monthly_pool.get() + w.top_up_pool.get();
            }
            prop_assert_eq!(held, granted, "nothing is created or destroyed but by grants");
        }
    }
}

/// A hot-path call on one workspace; charges are named by their index in creation order.
#[derive(Debug, Clone)]
enum Call {
    Consume { member: usize, amount: i64 },
    Hold { member: usize, amount: i64 },
    Commit { charge: usize, amount: i64 },
    Release { charge: usize },
    Refund { charge: usize, amount: Option<i64> },
}

/// Amounts mostly small, sometimes at the edge of what fits, to reach the overflow checks.
fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![8 => 1..400i64, 1 => Just(i64::MAX / 2), 1 => (i64::MAX - 10)..=i64::MAX]
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        (0..3usize, amount()).prop_map(|(member, amount)| Call::Consume { member, amount }),
        (0..3usize, amount()).prop_map(|(member, amount)| Call::Hold { member, amount }),
        (0..40usize, amount()).prop_map(|(charge, amount)| Call::Commit { charge, amount }),
        (0..40usize).prop_map(|charge| Call::Release { charge }),
        (0..40usize, proptest::option::of(amount())).prop_map(|(charge, amount)| Call::Refund { charge, amount }),
    ]
}

proptest! {
    /// The hot path's decisions, fuzzed: whatever the calls and amounts (edges included), no
    /// panic; a refused call changes nothing; balances equal the journal; each member's usage and
    /// the overflow pool's units equal what the charges hold.
    #[test]
    fn hot_path_decisions_conserve_credits_usage_and_units(
        calls in proptest::collection::vec(call(), 1..80),
        num in 1..9i64,
        den in 1..9i64,
        quota in 0..200i64,
    ) {
        let id = WorkspaceId::parse("w").expect("id");
        let mut workspace = Workspace::new(id.clone(), AccountId::parse("owner").expect("id"), 0);
        workspace.monthly_pool = credits(900);
        workspace.top_up_pool = credits(300);
        workspace.overflow = Some(OverflowPool::configure(
            None,
            OverflowSettings { enabled: true, quota_units: quota, ratio: UnitRatio::new(num, den).expect("ratio"), overage_limit_units: Some(400), period: "p".into() },
            0,
        ));
        let mut members: Vec<Member> = (0..3)
            .map(|m| {
                let mut member = workspace.admit(AccountId::parse(format!("m{m}")).expect("id"), Role::Editor, 0).expect("member");
                member.monthly.allowance = credits(300);
                member.top_up.allowance = credits(100);
                member
            })
            .collect();
        let access = [PoolAccess::Granted, PoolAccess::Granted, PoolAccess::Denied];
        let mut charges: Vec<Charge> = Vec::new();
        let mut journal = Journal::default();

        for (step, call) in calls.into_iter().enumerate() {
            // Members are m0, m1, m2: a charge's member is its account's number.
            let member_of = |charges: &Vec<Charge>, index: usize| {
                charges.get(index).and_then(|c| c.account_id.as_str()[1..].parse::<usize>().ok())
            };
            let (member, index) = match &call {
                Call::Consume { member, .. } | Call::Hold { member, .. } => (Some(*member), None),
                Call::Commit { charge, .. } | Call::Release { charge } | Call::Refund { charge, .. } => {
                    (member_of(&charges, *charge), Some(*charge))
                }
            };
            let Some(member) = member else { continue };
            let before = (workspace.clone(), members[member].clone(), index.and_then(|i| charges.get(i).cloned()));
            let mut wallet = Wallet::Workspace { workspace: workspace.clone(), member: members[member].clone(), access: access[member] };
            let key = ChargeKey::parse(format!("k{step}")).expect("key");
            let outcome = match call {
                Call::Consume { amount, .. } => Credits::new(amount).map(|amount| {
                    Wallet::for_member(workspace.clone(), members[member].clone(), access[member])
                        .and_then(|mut drawing| {
                            let made = Charge::consume(key, &mut drawing, amount, 0);
                            wallet = drawing;
                            made
                        })
                        .map(|(charge, movements)| (Some(charge), movements))
                }),
                Call::Hold { amount, .. } => Credits::new(amount).map(|amount| {
                    Wallet::for_member(workspace.clone(), members[member].clone(), access[member])
                        .and_then(|mut drawing| {
                            let made = Charge::hold(key, &mut drawing, amount, 0, 1_000);
                            wallet = drawing;
                            made
                        })
                        .map(|(charge, movements)| (Some(charge), movements))
                }),
                Call::Commit { charge, amount } => Credits::new(amount).map(|amount| {
                    charges[charge].commit(&mut wallet, amount).map(|(_, movements)| (None, movements))
                }),
                Call::Release { charge } => Some(charges[charge].release(&mut wallet, false).map(|(_, movements)| (None, movements))),
                Call::Refund { charge, amount } => match amount.map(|a| Credits::new(a).ok_or(())).transpose() {
                    Ok(amount) => Some(charges[charge].refund(&mut wallet, amount).map(|(_, movements)| (None, movements))),
                    Err(_) => None,
                },
            };
            match outcome {
                Some(Ok((made, movements))) => {
                    journal.apply(&movements);
                    let Wallet::Workspace { workspace: kept, member: kept_member, .. } = wallet else { unreachable!("a workspace wallet") };
                    workspace = kept;
                    members[member] = kept_member;
                    charges.extend(made);
                }
                Some(Err(_)) | None => {
                    // Refused: the state is as it was (the charge too: a failed commit keeps its hold).
                    prop_assert_eq!(&workspace, &before.0);
                    prop_assert_eq!(&members[member], &before.1);
                    if let Some(i) = index {
                        prop_assert_eq!(charges.get(i), before.2.as_ref());
                    }
                }
            }

            // L1 against the starting balances.
            prop_assert_eq!(workspace.monthly_pool.get() - 900, journal.balance("workspace_monthly", "w"));
            prop_assert_eq!(workspace.top_up_pool.get() - 300, journal.balance("workspace_top_up", "w"));
            prop_assert_eq!(-workspace.overflow_lent.get(), journal.balance("workspace_overflow", "w"));
            let held: i64 = charges.iter().filter(|c| c.state == ChargeState::Held).map(|c| c.split.total().get()).sum();
            prop_assert_eq!(held, journal.balance("workspace_held", "w"));
            // Usage and units are what the charges still hold.
            for (m, member) in members.iter().enumerate() {
                let (mut monthly, mut top_up) = (0, 0);
                for charge in charges.iter().filter(|c| c.account_id == member.account_id) {
                    if matches!(charge.state, ChargeState::Held | ChargeState::Captured) {
                        monthly += charge.split.monthly.get() - charge.refunded.monthly.get();
                        top_up += charge.split.top_up.get() - charge.refunded.top_up.get();
                    }
                }
                prop_assert_eq!((member.monthly.used.get(), member.top_up.used.get()), (monthly, top_up), "member {}", m);
                prop_assert!(member.monthly.used <= member.monthly.allowance && member.top_up.used <= member.top_up.allowance);
            }
            let pool = workspace.overflow.as_ref().expect("pool");
            let units = charges
                .iter()
                .filter(|c| matches!(c.state, ChargeState::Held | ChargeState::Captured))
                .fold(OverflowUnits::default(), |sum, c| sum.plus(c.overflow.units));
            prop_assert_eq!((pool.quota_used_units, pool.overage_units), (units.quota, units.overage));
        }
    }
}
