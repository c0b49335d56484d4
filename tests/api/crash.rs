//! The real binary killed with SIGKILL again and again under load, while clients retry every call
//! with its key until it is answered: afterwards every acknowledged call replays its answer and
//! its credits are in the journal exactly once. Short by default (three kills per store); the
//! long mode is `CRASH_KILLS=100 cargo test --release --test api crash:: -- --nocapture`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use creditpool::proto::credit_service_client::CreditServiceClient;
use creditpool::proto::*;
use rstest::rstest;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::Backend;
use crate::process::{ServerProcess, database_environment, endpoint, free_address, scratch_directory, serve_command};

/// A call and the answer it was acknowledged with.
#[derive(Debug, Clone)]
enum Acknowledged {
    Consume(ConsumeRequest, ConsumeResponse),
    Reserve(ReserveRequest, ReserveResponse),
    Commit(CommitRequest, CommitResponse),
}

/// Sends `call` until it is answered (not a transport failure or UNAVAILABLE); the answer.
async fn until_answered<T, F, Fut>(mut call: F, retries: &AtomicUsize) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    loop {
        match call().await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status)
                if matches!(
                    status.code(),
                    Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
                ) =>
            {
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => return Err(status),
        }
    }
}

fn timed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(3));
    request
}

async fn traffic(
    credit: CreditServiceClient<Channel>,
    client: usize,
    running: Arc<AtomicBool>,
    retries: Arc<AtomicUsize>,
) -> (Vec<Acknowledged>, Vec<tonic::Status>) {
    let member = format!("m{}", client % 4);
    let (mut acknowledged, mut refused) = (Vec::new(), Vec::new());
    let mut step = 0;
    while running.load(Ordering::Relaxed) {
        step += 1;
        let key = format!("c{client}-{step}");
        if step % 3 == 0 {
            let reserve = ReserveRequest {
                reservation_key: key.clone(),
                account_id: member.clone(),
                workspace_id: "team".into(),
                amount_credits: 3,
                ..Default::default()
            };
            match until_answered(
                || {
                    let mut credit = credit.clone();
                    let request = timed(reserve.clone());
                    async move { credit.reserve(request).await }
                },
                &retries,
            )
            .await
            {
                Ok(answer) => acknowledged.push(Acknowledged::Reserve(reserve, answer)),
                Err(status) => {
                    refused.push(status);
                    continue;
                }
            }
            let commit = CommitRequest {
                reservation_key: key,
                account_id: member.clone(),
                workspace_id: "team".into(),
                amount_credits: 2,
                ..Default::default()
            };
            match until_answered(
                || {
                    let mut credit = credit.clone();
                    let request = timed(commit.clone());
                    async move { credit.commit(request).await }
                },
                &retries,
            )
            .await
            {
                Ok(answer) => acknowledged.push(Acknowledged::Commit(commit, answer)),
                Err(status) => refused.push(status),
            }
        } else {
            let consume = ConsumeRequest {
                idempotency_key: key,
                account_id: member.clone(),
                workspace_id: "team".into(),
                amount_credits: 1,
                ..Default::default()
            };
            match until_answered(
                || {
                    let mut credit = credit.clone();
                    let request = timed(consume.clone());
                    async move { credit.consume(request).await }
                },
                &retries,
            )
            .await
            {
                Ok(answer) => acknowledged.push(Acknowledged::Consume(consume, answer)),
                Err(status) => refused.push(status),
            }
        }
    }
    (acknowledged, refused)
}

/// Workspace `team` of `owner` with a pool of 1,000,000 and members m0–m3 with 250,000 each.
async fn set_up(mut admin: creditpool::proto::admin_service_client::AdminServiceClient<Channel>) {
    let key = crate::helpers::key;
    crate::process::owner_and_team(&mut admin, 1_000_000, 1_000_000).await;
    for member in ["m0", "m1", "m2", "m3"] {
        admin
            .create_account(CreateAccountRequest { idempotency_key: key(), account_id: member.into() })
            .await
            .expect("account");
        admin
            .add_member(AddMemberRequest {
                idempotency_key: key(),
                workspace_id: "team".into(),
                actor_account_id: "owner".into(),
                account_id: member.into(),
                role: Role::Editor.into(),
            })
            .await
            .expect("member");
        admin
            .set_member_allowance(SetMemberAllowanceRequest {
                idempotency_key: key(),
                workspace_id: "team".into(),
                actor_account_id: "owner".into(),
                account_id: member.into(),
                monthly_allowance_credits: 250_000,
                top_up_allowance_credits: 0,
            })
            .await
            .expect("allowance");
    }
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_every_call_acknowledged_before_a_sigkill_replays_and_is_in_the_journal_once(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let kills: usize = std::env::var("CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let directory = scratch_directory(&format!("crash-{backend:?}"));
    let environment = database_environment(backend).await;
    let environment: Vec<(&str, &str)> = environment.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let address = free_address();
    let mut server = ServerProcess::start(serve_command(&directory, &address, &environment), &address).await;
    set_up(server.admin.clone()).await;

    let running = Arc::new(AtomicBool::new(true));
    let retries = Arc::new(AtomicUsize::new(0));
    let credit = CreditServiceClient::new(endpoint(&address, None).connect_lazy());
    let clients: Vec<_> = (0..8)
        .map(|client| tokio::spawn(traffic(credit.clone(), client, Arc::clone(&running), Arc::clone(&retries))))
        .collect();
    let mut restarts = Vec::new();
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(800)).await;
        server.kill().await;
        let started = Instant::now();
        server = ServerProcess::start(serve_command(&directory, &address, &environment), &address).await;
        restarts.push(started.elapsed());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.store(false, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for client in clients {
        let (calls, refused) = client.await.expect("client");
        assert!(refused.is_empty(), "only retries and answers, never a refusal: {refused:?}");
        acknowledged.extend(calls);
    }

    // Every acknowledged call replays its answer, and its credits are in the journal once.
    let mut credit = server.credit.clone();
    let mut consumed_by_reference: HashMap<String, i64> = HashMap::new();
    for call in &acknowledged {
        match call {
            Acknowledged::Consume(request, answer) => {
                let replay = credit.consume(request.clone()).await.expect("replay").into_inner();
                assert_eq!(&replay, answer, "{request:?}");
                let amount = answer.consumption.as_ref().expect("consumption").amount_credits;
                consumed_by_reference.insert(format!("Consume/{}", request.idempotency_key), amount);
            }
            Acknowledged::Reserve(request, answer) => {
                let mut replay = credit.reserve(request.clone()).await.expect("replay").into_inner();
                let mut answer = answer.clone();
                for reservation in [replay.reservation.as_mut(), answer.reservation.as_mut()].into_iter().flatten() {
                    reservation.age_seconds = 0;
                }
                assert_eq!(replay, answer, "{request:?}");
            }
            Acknowledged::Commit(request, answer) => {
                let replay = credit.commit(request.clone()).await.expect("replay").into_inner();
                assert_eq!(&replay, answer, "{request:?}");
                let amount = answer.consumption.as_ref().expect("consumption").amount_credits;
                consumed_by_reference.insert(format!("Commit/{}", request.reservation_key), amount);
            }
        }
    }
    sqlx::any::install_default_drivers();
    let url = match environment.iter().find(|(name, _)| *name == "CREDITPOOL_DATABASE_URL") {
        Some((_, url)) => (*url).to_owned(),
        None => format!("sqlite://{}", directory.join("data/creditpool.db").display()),
    };
    let db = sqlx::AnyPool::connect(&url).await.expect("the test's database");
    let journal: Vec<(String, i64)> = sqlx::query_as(
        "SELECT reference, CAST(SUM(amount_credits) AS BIGINT) FROM journal_entries \
         WHERE to_bucket = 'consumed' GROUP BY reference",
    )
    .fetch_all(&db)
    .await
    .expect("journal");
    let journal: HashMap<String, i64> = journal.into_iter().collect();
    let mut wrong = Vec::new();
    for (reference, amount) in &consumed_by_reference {
        if journal.get(reference) != Some(amount) {
            wrong.push((reference, amount, journal.get(reference)));
        }
    }
    assert!(wrong.is_empty(), "(reference, acknowledged, in the journal): {wrong:?}");
    let check = server.admin.clone().verify_ledger(VerifyLedgerRequest {}).await.expect("verify").into_inner();
    assert!(check.clean, "{:?}", check.discrepancies);
    restarts.sort();
    println!(
        "crash run on {backend:?}: {kills} SIGKILLs, {} acknowledged calls, {} retries, restart to SERVING \
         median {} ms, max {} ms",
        acknowledged.len(),
        retries.load(Ordering::Relaxed),
        restarts.get(restarts.len() / 2).map_or(0, Duration::as_millis),
        restarts.last().map_or(0, Duration::as_millis),
    );
    server.stop().await;
}
