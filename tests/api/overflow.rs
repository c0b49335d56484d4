//! C1 third link and C4: the enterprise overflow pool, drawn at a ratio by members of
//! pool-access profiles once their allowances are spent (product page: enterprise generative
//! credit pool).

use std::collections::HashMap;
use std::time::Duration;

use creditpool::proto::*;
use rand::{Rng, SeedableRng};
use rstest::rstest;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{Backend, TestApp, key, spawn_app};

const ORG: &str = "org";
const OWNER: &str = "owner";

/// An organisation workspace: pool 500 on a 1,000 plan, members alice and bob (editors) with a
/// monthly allowance of `allowance` each.
async fn organisation(app: &TestApp, allowance: i64) {
    app.create_account_with_plan(OWNER, 1_000).await;
    app.create_workspace(ORG, OWNER).await;
    app.set_pool_size(ORG, OWNER, 500).await.expect("pool size");
    for member in ["alice", "bob"] {
        app.create_account(member).await;
        app.add_member(ORG, OWNER, member, Role::Editor).await.expect("member");
        app.set_allowance(ORG, OWNER, member, allowance, 0).await.expect("allowance");
    }
}

pub(crate) async fn configure(
    app: &TestApp,
    quota: i64,
    num: i64,
    den: i64,
    limit: Option<i64>,
    period: &str,
) -> OverflowPool {
    app.admin
        .clone()
        .configure_overflow_pool(ConfigureOverflowPoolRequest {
            idempotency_key: key(),
            workspace_id: ORG.into(),
            actor_account_id: OWNER.into(),
            quota_units: quota,
            units_per_credit_num: num,
            units_per_credit_den: den,
            overage_limit_units: limit,
            enabled: true,
            contract_period: period.into(),
        })
        .await
        .expect("ConfigureOverflowPool")
        .into_inner()
        .workspace
        .and_then(|workspace| workspace.overflow_pool)
        .expect("overflow pool")
}

pub(crate) async fn profile(app: &TestApp, id: &str, requires_consent: bool, members: &[&str]) {
    app.admin
        .clone()
        .create_profile(CreateProfileRequest {
            idempotency_key: key(),
            workspace_id: ORG.into(),
            actor_account_id: OWNER.into(),
            profile_id: id.into(),
            name: format!("Profile {id}"),
            pool_access: true,
            notify_on_assign: false,
            requires_consent,
        })
        .await
        .expect("CreateProfile");
    app.admin
        .clone()
        .assign_profile_members(AssignProfileMembersRequest {
            idempotency_key: key(),
            workspace_id: ORG.into(),
            actor_account_id: OWNER.into(),
            profile_id: id.into(),
            account_ids: members.iter().map(|member| (*member).to_owned()).collect(),
        })
        .await
        .expect("AssignProfileMembers");
}

async fn set_access(app: &TestApp, id: &str, pool_access: bool) {
    app.admin
        .clone()
        .update_profile(UpdateProfileRequest {
            idempotency_key: key(),
            workspace_id: ORG.into(),
            actor_account_id: OWNER.into(),
            profile_id: id.into(),
            pool_access: Some(pool_access),
            ..Default::default()
        })
        .await
        .expect("UpdateProfile");
}

async fn pool(app: &TestApp) -> OverflowPool {
    app.workspace(ORG).await.overflow_pool.expect("overflow pool")
}

/// The overflow part of a split: (credits, units, overage units).
fn overflow(split: &[SplitPart]) -> (i64, i64, i64) {
    split
        .iter()
        .find(|part| part.bucket() == Bucket::Overflow)
        .map_or((0, 0, 0), |part| (part.amount_credits, part.overflow_units, part.overage_units))
}

#[rstest]
#[tokio::test]
async fn c4_members_past_their_allowance_keep_working_from_the_pool_at_the_ratio_until_access_or_renewal_changes(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    organisation(&app, 10).await;
    configure(&app, 40, 7, 3, None, "2026").await;
    profile(&app, "designers", false, &["alice"]).await;

    // The monthly allowance first, then the remainder of one call from the pool, rounded up.
    let first = app.consume("a1", "alice", ORG, 10).await.expect("allowance");
    assert_eq!(overflow(&first.split), (0, 0, 0));
    let second = app.consume("a2", "alice", ORG, 3).await.expect("overflow");
    assert_eq!(overflow(&second.split), (3, 7, 0));

    // Bob is in no pool-access profile: refused, nothing taken.
    let before = app.snapshot().await;
    let bob = app.consume("b1", "bob", ORG, 11).await.expect_err("no pool access");
    assert_eq!(bob.code(), Code::ResourceExhausted);
    assert_eq!(app.snapshot().await, before);

    // The admin switches the profile off: the next call is refused; on again: it draws.
    set_access(&app, "designers", false).await;
    let off = app.consume("a3", "alice", ORG, 1).await.expect_err("access off");
    assert_eq!(off.code(), Code::ResourceExhausted);
    set_access(&app, "designers", true).await;
    let on = app.consume("a4", "alice", ORG, 1).await.expect("access on");
    assert_eq!(overflow(&on.split), (1, 3, 0));

    // Past the quota (30 left): 14 credits cost 33 units, 30 of quota and 3 of overage.
    let past = app.consume("a5", "alice", ORG, 14).await.expect("into overage");
    assert_eq!(overflow(&past.split), (14, 33, 3));
    let more = app.consume("a6", "alice", ORG, 1).await.expect("more overage");
    assert_eq!(overflow(&more.split), (1, 3, 3));
    let drawn = pool(&app).await;
    assert_eq!((drawn.used_units, drawn.overage_units), (7 + 3 + 33 + 3, 6));

    // The member's renewal: back on monthly credits, the pool untouched.
    let account = app.account(OWNER).await;
    app.renew(OWNER, &crate::helpers::next_period(&account.current_period)).await.expect("renewal");
    let renewed = app.consume("a7", "alice", ORG, 5).await.expect("monthly again");
    assert_eq!(overflow(&renewed.split), (0, 0, 0));
    assert_eq!(pool(&app).await, drawn);

    let balance = app.balance("alice", ORG).await;
    assert!(balance.overflow_access && !balance.overflow_needs_consent);
    assert_eq!((balance.overflow_remaining_units, balance.overflow_overage_units), (0, 6));
    assert!(!app.balance("bob", ORG).await.overflow_access);

    let events = events_of(&app, NotificationKind::OverageStarted).await;
    assert_eq!(events.len(), 1, "OVERAGE_STARTED fires once a contract period: {events:?}");
    assert_eq!(events[0].member_account_id, "alice");

    // The organisation report: each member's split and the overage, as the pool counts them.
    let report = app
        .admin
        .clone()
        .get_usage_report(GetUsageReportRequest {
            workspace_id: ORG.into(),
            contract_period: "2026".into(),
            ..Default::default()
        })
        .await
        .expect("GetUsageReport")
        .into_inner();
    let alice = report.members.iter().find(|member| member.account_id == "alice").expect("alice");
    let split: Vec<(Bucket, i64)> = crate::helpers::parts(&alice.consumed);
    assert_eq!(split, vec![(Bucket::WorkspaceMonthly, 15), (Bucket::Overflow, 19)]);
    assert_eq!(overflow(&alice.consumed), (19, 46, 6));
    assert!(report.members.iter().all(|member| member.account_id != "bob"), "bob drew nothing");
    assert_eq!((report.overflow_units, report.overage_units), (drawn.used_units, drawn.overage_units));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c4_the_overage_limit_is_exact_at_the_boundary_unlimited_without_one_and_a_new_period_resets(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    organisation(&app, 10).await;
    configure(&app, 10, 1, 1, Some(5), "2026").await;
    profile(&app, "all", false, &["alice"]).await;

    let exact = app.consume("exact", "alice", ORG, 25).await.expect("allowance + quota + the whole overage");
    assert_eq!(overflow(&exact.split), (15, 15, 5));
    let before = app.snapshot().await;
    let refused = app.consume("over", "alice", ORG, 1).await.expect_err("one credit past the limit");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(app.snapshot().await, before);

    let unlimited = configure(&app, 10, 1, 1, None, "2026").await;
    assert_eq!((unlimited.used_units, unlimited.overage_units), (15, 5), "same period keeps what was used");
    let big = app.consume("big", "alice", ORG, 1_000).await.expect("no limit");
    assert_eq!(overflow(&big.split), (1_000, 1_000, 1_000));

    let next = configure(&app, 10, 1, 1, Some(5), "2027").await;
    assert_eq!((next.used_units, next.overage_units, next.contract_period.as_str()), (0, 0, "2027"));
    // A charge of the closed period returns its credits, but its units stay counted there.
    let refund = app.refund("big", "alice", ORG, None).await.expect("refund");
    assert_eq!(overflow(&refund.returned).0, 1_000);
    assert_eq!(pool(&app).await.used_units, 0);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c1_a_consent_profile_draws_the_pool_only_when_the_request_allows_it(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    organisation(&app, 10).await;
    configure(&app, 100, 2, 1, None, "2026").await;
    profile(&app, "careful", true, &["alice"]).await;
    assert!(app.balance("alice", ORG).await.overflow_needs_consent);

    let before = app.snapshot().await;
    let asked = app.consume("ask", "alice", ORG, 13).await.expect_err("needs consent");
    assert_eq!(asked.code(), Code::ResourceExhausted);
    let info = asked.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "OVERFLOW_NEEDS_CONSENT");
    assert_eq!(info.metadata.get("overflow_credits").map(String::as_str), Some("3"));
    assert_eq!(info.metadata.get("overflow_units").map(String::as_str), Some("6"));
    assert_eq!(app.snapshot().await, before);

    let consented = app
        .credit
        .clone()
        .consume(ConsumeRequest {
            idempotency_key: "ask".into(),
            account_id: "alice".into(),
            workspace_id: ORG.into(),
            amount_credits: 13,
            allow_overflow: true,
        })
        .await
        .expect("consented")
        .into_inner()
        .consumption
        .expect("consumption");
    assert_eq!(overflow(&consented.split), (3, 6, 0));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c6_refunds_and_partial_commits_return_overflow_first_overage_before_quota_and_every_unit(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    organisation(&app, 10).await;
    configure(&app, 10, 1, 1, None, "2026").await;
    profile(&app, "all", false, &["alice"]).await;

    app.consume("c", "alice", ORG, 25).await.expect("10 allowance, 10 quota, 5 overage");
    let first = app.refund("c", "alice", ORG, Some(7)).await.expect("partial refund");
    assert_eq!(crate::helpers::parts(&first.returned), vec![(Bucket::Overflow, 7)]);
    assert_eq!(overflow(&first.returned), (7, 7, 5));
    let rest = app.refund("c", "alice", ORG, None).await.expect("the rest");
    assert_eq!(crate::helpers::parts(&rest.returned), vec![(Bucket::Overflow, 8), (Bucket::WorkspaceMonthly, 10)]);
    let empty = pool(&app).await;
    assert_eq!((empty.used_units, empty.overage_units), (0, 0));

    app.reserve("job", "alice", ORG, 18, 0).await.expect("hold into the pool");
    let committed = app.commit("job", "alice", ORG, 12).await.expect("commit less");
    assert_eq!(crate::helpers::parts(&committed.returned), vec![(Bucket::Overflow, 6)]);
    assert_eq!(pool(&app).await.used_units, 2);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn c4_a_thousand_random_consumes_and_refunds_never_create_or_destroy_a_unit(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
    #[values((7, 3), (1, 1000))] ratio: (i64, i64),
) {
    let app = spawn_app(backend).await;
    organisation(&app, 5).await;
    configure(&app, 1_000, ratio.0, ratio.1, None, "2026").await;
    profile(&app, "all", false, &["alice"]).await;
    let mut random = rand::rngs::StdRng::seed_from_u64(7);
    // Units each charge holds now, as its latest answer says.
    let mut held: HashMap<String, i64> = HashMap::new();
    let mut refundable: HashMap<String, i64> = HashMap::new();
    for step in 0..1_000 {
        let open: Vec<String> = refundable.iter().filter(|(_, left)| **left > 0).map(|(k, _)| k.clone()).collect();
        if open.is_empty() || random.random_bool(0.6) {
            let key = format!("c{step}");
            let charge = app.consume(&key, "alice", ORG, random.random_range(1..=20)).await.expect("consume");
            held.insert(key.clone(), overflow(&charge.split).1);
            refundable.insert(key, charge.amount_credits);
        } else {
            let key = &open[random.random_range(0..open.len())];
            let amount = random.random_range(1..=refundable[key]);
            let refund = app.refund(key, "alice", ORG, Some(amount)).await.expect("refund");
            let consumption = refund.consumption.expect("consumption");
            held.insert(key.clone(), overflow(&consumption.split).1);
            refundable.insert(key.clone(), consumption.amount_credits - consumption.refunded_credits);
        }
        let used = pool(&app).await.used_units;
        assert!(used >= 0 && held.values().all(|units| *units >= 0));
        assert_eq!(used, held.values().sum::<i64>(), "step {step}: the pool counts exactly what charges hold");
    }
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c4_sixty_four_clients_mixing_allowance_and_overflow_draws_refunds_and_toggles_keep_every_unit(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    organisation(&app, 50).await;
    configure(&app, 200, 7, 3, Some(300), "2026").await;
    profile(&app, "designers", false, &["alice", "bob"]).await;
    let app = std::sync::Arc::new(app);
    let clients = (0..64u64).map(|client| {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move {
            let mut random = rand::rngs::StdRng::seed_from_u64(client);
            // Units each of this client's charges holds now, as its latest answer says.
            let mut held: HashMap<String, i64> = HashMap::new();
            let mut overflow_draws = 0;
            for step in 0..12 {
                let member = if client % 2 == 0 { "alice" } else { "bob" };
                match random.random_range(0..10) {
                    0 if client % 16 == 0 => set_access(&app, "designers", random.random_bool(0.5)).await,
                    0..=6 => {
                        let key = format!("c{client}-{step}");
                        match app.consume(&key, member, ORG, random.random_range(1..=9)).await {
                            Ok(charge) => {
                                overflow_draws += i64::from(overflow(&charge.split).0 > 0);
                                held.insert(key, overflow(&charge.split).1);
                            }
                            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
                        }
                    }
                    _ => {
                        let Some(key) = held.keys().next().cloned() else { continue };
                        let refund = app.refund(&key, member, ORG, Some(1)).await;
                        match refund {
                            Ok(refund) => {
                                let consumption = refund.consumption.expect("consumption");
                                held.insert(key, overflow(&consumption.split).1);
                            }
                            Err(status) => {
                                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                                held.remove(&key);
                            }
                        }
                    }
                }
            }
            (held.values().sum::<i64>(), overflow_draws)
        })
    });
    let outcomes = crate::helpers::join_all(clients.collect::<Vec<_>>()).await;
    let held: i64 = outcomes.iter().map(|(units, _)| units).sum();
    assert!(outcomes.iter().map(|(_, draws)| draws).sum::<i64>() > 0, "some consumes drew the pool");

    let pool = pool(&app).await;
    assert_eq!(pool.used_units, held, "the pool counts exactly the units the charges hold");
    assert!(pool.overage_units <= 300, "overage stays within its limit: {}", pool.overage_units);
    assert!(pool.used_units - pool.overage_units <= pool.quota_units);
    let workspace = app.workspace(ORG).await;
    assert!(workspace.monthly_pool_credits >= 0 && workspace.top_up_pool_credits >= 0);
    for member in app.members(ORG).await {
        let monthly = member.monthly.expect("monthly");
        assert!(monthly.used_credits <= monthly.allowance_credits, "{member:?}");
    }
    app.assert_ledger_clean().await;
}

/// Every stored event of the workspace of `kind` (replayed, then a quiet moment).
async fn events_of(app: &TestApp, kind: NotificationKind) -> Vec<Notification> {
    let mut stream = app
        .admin
        .clone()
        .watch_notifications(WatchNotificationsRequest {
            workspace_id: ORG.into(),
            kinds: vec![kind as i32],
            ..Default::default()
        })
        .await
        .expect("WatchNotifications")
        .into_inner();
    let mut events = Vec::new();
    while let Ok(Ok(Some(message))) = tokio::time::timeout(Duration::from_secs(2), stream.message()).await {
        events.extend(message.notification);
    }
    events
}

#[rstest]
#[tokio::test]
async fn n_assigning_to_a_notifying_profile_and_running_the_quota_low_write_their_events(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    organisation(&app, 10).await;
    configure(&app, 20, 1, 1, None, "2026").await;
    app.admin
        .clone()
        .set_low_balance_thresholds(SetLowBalanceThresholdsRequest {
            idempotency_key: key(),
            workspace_id: ORG.into(),
            actor_account_id: OWNER.into(),
            thresholds: Some(LowBalanceThresholds {
                member_remaining_percent: 0,
                overflow_units: 5,
                ..Default::default()
            }),
        })
        .await
        .expect("thresholds");
    app.admin
        .clone()
        .create_profile(CreateProfileRequest {
            idempotency_key: key(),
            workspace_id: ORG.into(),
            actor_account_id: OWNER.into(),
            profile_id: "loud".into(),
            name: "Loud".into(),
            pool_access: true,
            notify_on_assign: true,
            requires_consent: false,
        })
        .await
        .expect("profile");
    for accounts in [vec!["alice".to_owned()], vec!["alice".to_owned(), "bob".to_owned()]] {
        app.admin
            .clone()
            .assign_profile_members(AssignProfileMembersRequest {
                idempotency_key: key(),
                workspace_id: ORG.into(),
                actor_account_id: OWNER.into(),
                profile_id: "loud".into(),
                account_ids: accounts,
            })
            .await
            .expect("assign");
    }

    let assigned = events_of(&app, NotificationKind::MemberAssignedToProfile).await;
    let members: Vec<&str> = assigned.iter().map(|event| event.member_account_id.as_str()).collect();
    assert_eq!(members, vec!["alice", "bob"], "one event per newly assigned member");
    assert!(assigned.iter().all(|event| event.account_id == OWNER));

    // The quota (20 units) falls from 10 left to 4 left: below the threshold of 5, once.
    app.consume("a1", "alice", ORG, 20).await.expect("10 allowance, 10 units");
    app.consume("a2", "alice", ORG, 6).await.expect("6 units");
    app.consume("a3", "alice", ORG, 1).await.expect("1 unit");
    let low: Vec<Notification> = events_of(&app, NotificationKind::LowBalance)
        .await
        .into_iter()
        .filter(|event| matches!(&event.payload, Some(notification::Payload::LowBalance(p)) if p.bucket() == Bucket::Overflow))
        .collect();
    assert_eq!(low.len(), 1, "{low:?}");
    let Some(notification::Payload::LowBalance(payload)) = &low[0].payload else { unreachable!() };
    assert_eq!((payload.balance, payload.threshold), (4, 5));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn l1_verify_ledger_recomputes_member_usage_and_overflow_units_from_the_charges(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    organisation(&app, 10).await;
    configure(&app, 5, 7, 3, None, "2026").await;
    profile(&app, "designers", false, &["alice"]).await;
    app.consume("a1", "alice", ORG, 12).await.expect("allowance, then the pool: 14 units, 9 past the quota");
    app.reserve("h1", "bob", ORG, 4, 0).await.expect("hold");
    app.refund("a1", "alice", ORG, Some(1)).await.expect("partial refund");
    app.assert_ledger_clean().await;

    sqlx::query("UPDATE members SET monthly_used_credits = monthly_used_credits + 3 WHERE account_id = 'bob'")
        .execute(&app.db)
        .await
        .expect("tamper with usage");
    let stored: String = sqlx::query_scalar("SELECT overflow_pool FROM workspaces WHERE workspace_id = 'org'")
        .fetch_one(&app.db)
        .await
        .expect("pool");
    let mut tampered: serde_json::Value = serde_json::from_str(&stored).expect("pool JSON");
    let overage = tampered["overage_units"].as_i64().expect("overage_units");
    tampered["overage_units"] = (overage + 2).into();
    sqlx::query("UPDATE workspaces SET overflow_pool = $1 WHERE workspace_id = 'org'")
        .bind(tampered.to_string())
        .execute(&app.db)
        .await
        .expect("tamper with units");
    let check = app.admin.clone().verify_ledger(VerifyLedgerRequest {}).await.expect("verify").into_inner();

    assert!(!check.clean);
    assert_eq!(
        check.discrepancies,
        vec![
            LedgerDiscrepancy {
                bucket: "member_monthly_used".into(),
                owner_id: "org/bob".into(),
                recorded_credits: 7,
                journal_credits: 4,
            },
            LedgerDiscrepancy {
                bucket: "overflow_overage_units".into(),
                owner_id: "org".into(),
                recorded_credits: overage + 2,
                journal_credits: overage,
            },
        ]
    );
}

#[rstest]
#[tokio::test]
async fn c5_a_commit_for_more_than_a_hold_of_a_closed_contract_period_is_refused_when_it_would_draw_the_pool(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    organisation(&app, 10).await;
    configure(&app, 100, 1, 1, None, "2026").await;
    profile(&app, "all", false, &["alice"]).await;
    app.reserve("job", "alice", ORG, 15, 0).await.expect("10 allowance, 5 from the pool");
    configure(&app, 100, 1, 1, None, "2027").await;
    let before = app.snapshot().await;

    // The hold's 5 units are counted in 2026; 20 more credits would be 2027's units on it.
    let refused = app.commit("job", "alice", ORG, 40).await;
    let status = crate::helpers::assert_error(refused, tonic::Code::FailedPrecondition, "amount_credits");
    assert!(status.message().contains("commit at most the 15 credits"), "{}", status.message());
    assert_eq!(app.snapshot().await, before, "the refusal changed nothing");

    // Within what it holds, the hold commits; its returned units stay with 2026.
    let committed = app.commit("job", "alice", ORG, 12).await.expect("commit less");
    assert_eq!(crate::helpers::parts(&committed.returned), vec![(Bucket::Overflow, 3)]);
    assert_eq!(pool(&app).await.used_units, 0, "2027 has drawn nothing");
    app.assert_ledger_clean().await;
}
