//! Database faults under load: a cluster of the test's own restarted, killed and stopped
//! immediately while clients consume and retry with their keys. During each fault callers get
//! only UNAVAILABLE (or their own deadline); readiness turns NOT_SERVING and back without a
//! restart of the service; afterwards every acknowledged call replays and is in the journal once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use creditpool::proto::*;
use tokio::sync::Mutex;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::health::wait_for_health;
use crate::helpers::{TestApp, spawn_app_on};
use crate::postgres::FaultyCluster;

/// A way to break the cluster.
type Fault = fn(&FaultyCluster);

/// What the clients saw: acknowledged consumes, and every error code with its count.
#[derive(Default)]
struct Seen {
    acknowledged: Vec<(ConsumeRequest, ConsumeResponse)>,
    codes: HashMap<Code, usize>,
    others: Vec<String>,
}

async fn traffic(app: Arc<TestApp>, client: usize, running: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let member = format!("m{}", client % 4);
    let mut step = 0;
    while running.load(Ordering::Relaxed) {
        step += 1;
        let consume = ConsumeRequest {
            idempotency_key: format!("c{client}-{step}"),
            account_id: member.clone(),
            workspace_id: "team".into(),
            amount_credits: 1,
            ..Default::default()
        };
        loop {
            let mut request = tonic::Request::new(consume.clone());
            request.set_timeout(Duration::from_secs(2));
            match app.credit.clone().consume(request).await {
                Ok(answer) => {
                    seen.lock().await.acknowledged.push((consume, answer.into_inner()));
                    break;
                }
                Err(status) => {
                    let mut seen = seen.lock().await;
                    *seen.codes.entry(status.code()).or_default() += 1;
                    // The client's own timer answers CANCELLED "Timeout expired": its deadline too.
                    let own_deadline = status.code() == Code::Cancelled && status.message() == "Timeout expired";
                    if !matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded) && !own_deadline {
                        seen.others.push(format!("{status:?}"));
                    }
                    drop(seen);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_faults_answer_unavailable_flip_readiness_both_ways_and_recover_exactly_once() {
    let cluster = Arc::new(FaultyCluster::start("pg-faults"));
    let app = spawn_app_on(cluster.url.clone()).await;
    app.create_account_with_plan("owner", 1_000_000).await;
    app.create_workspace("team", "owner").await;
    app.set_pool_size("team", "owner", 1_000_000).await.expect("pool");
    for member in ["m0", "m1", "m2", "m3"] {
        app.create_account(member).await;
        app.add_member("team", "owner", member, Role::Editor).await.expect("member");
        app.set_allowance("team", "owner", member, 250_000, 0).await.expect("allowance");
    }
    let app = Arc::new(app);
    let running = Arc::new(AtomicBool::new(true));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let clients: Vec<_> =
        (0..8).map(|c| tokio::spawn(traffic(Arc::clone(&app), c, Arc::clone(&running), Arc::clone(&seen)))).collect();

    let mut health = app.health.clone();
    let mut recoveries = Vec::new();
    let faults: [(&str, Fault); 3] = [
        ("fast restart", FaultyCluster::restart_fast),
        ("postmaster SIGKILL", FaultyCluster::kill_postmaster),
        ("immediate stop", FaultyCluster::stop_immediately),
    ];
    for (fault, inject) in faults {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let before = seen.lock().await.acknowledged.len();
        let cluster_now = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || inject(&cluster_now)).await.expect("fault");
        if fault != "fast restart" {
            // Down until started again: readiness must say so.
            wait_for_health(&mut health, &["readiness"], ServingStatus::NotServing).await;
            wait_for_health(&mut health, &["liveness"], ServingStatus::Serving).await;
            let cluster_now = Arc::clone(&cluster);
            tokio::task::spawn_blocking(move || cluster_now.start_again()).await.expect("start");
        }
        let back = Instant::now();
        wait_for_health(&mut health, &["readiness"], ServingStatus::Serving).await;
        // Recovered: calls succeed again, without restarting the service.
        loop {
            if seen.lock().await.acknowledged.len() > before + 8 {
                break;
            }
            assert!(back.elapsed() < Duration::from_secs(30), "no call succeeded 30 s after the {fault}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        recoveries.push((fault, back.elapsed()));
    }
    running.store(false, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client");
    }

    let seen = seen.lock().await;
    assert!(seen.others.is_empty(), "only UNAVAILABLE or the caller's deadline during faults: {:?}", seen.others);
    let mut consumed: HashMap<String, i64> = HashMap::new();
    for (request, answer) in &seen.acknowledged {
        let replay = app.credit.clone().consume(request.clone()).await.expect("replay").into_inner();
        assert_eq!(&replay, answer);
        consumed.insert(format!("Consume/{}", request.idempotency_key), 1);
    }
    let journal: Vec<(String, i64)> = sqlx::query_as(
        "SELECT reference, CAST(SUM(amount_credits) AS BIGINT) FROM journal_entries \
         WHERE to_bucket = 'consumed' GROUP BY reference",
    )
    .fetch_all(&app.db)
    .await
    .expect("journal");
    let journal: HashMap<String, i64> = journal.into_iter().collect();
    let wrong: Vec<_> = consumed.keys().filter(|r| journal.get(*r) != Some(&1)).collect();
    assert!(wrong.is_empty(), "acknowledged but not in the journal exactly once: {wrong:?}");
    app.assert_ledger_clean().await;
    println!(
        "database faults: {} acknowledged consumes, errors seen {:?}, readiness back to calls served: {:?}",
        seen.acknowledged.len(),
        seen.codes,
        recoveries
    );
}
