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
