//! The transport as an operator deploys it: secure by default, TLS and mTLS, credentials rotated
//! by SIGHUP, and the limits on what one caller can take.

use std::time::{Duration, Instant};

use creditpool::proto::admin_service_client::AdminServiceClient;
use creditpool::proto::*;
use rstest::rstest;
use tonic::Code;

use crate::helpers::{Backend, Bearer, TestApp, TestPrincipal, auth_file, join_all, spawn_app_with_token};
use crate::pki::Pki;
use crate::process::{
    ServerProcess, database_environment, endpoint, free_address, run_to_end, scratch_directory, serve_command,
};

/// Generous bound on how long a reload or a released stream may take to show.
const SETTLE_DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn without_principals_the_binary_refuses_a_non_loopback_address_and_serves_on_loopback() {
    let directory = scratch_directory("secure-default");
    let exposed = format!("0.0.0.0:{}", free_address().rsplit(':').next().expect("port"));
    let quick = [("CREDITPOOL_SHUTDOWN_DRAIN_DELAY_MS", "0")];

    let (refused, _, why) = run_to_end(serve_command(&directory, &exposed, &quick)).await;
    let loopback = free_address();
    let served = ServerProcess::start(serve_command(&directory, &loopback, &quick), &loopback).await;
    served.stop().await;
    let insecure = format!("0.0.0.0:{}", free_address().rsplit(':').next().expect("port"));
    let mut command = serve_command(&directory, &insecure, &quick);
    command.arg("--insecure-no-auth");
    let reachable = insecure.replace("0.0.0.0", "127.0.0.1");
    let insecure_server = ServerProcess::start(command, &reachable).await;
    let log = insecure_server.stop().await;

    assert!(!refused, "an exposed address without principals must not be served");
    assert!(why.contains("listen_addr") && why.contains("auth_file"), "the message names the settings: {why}");
    assert!(log.contains("insecure_no_auth is on"), "the operator is warned: {log}");
}

fn mtls_principals(extra: &str) -> std::path::PathBuf {
    auth_file(&[TestPrincipal {
        name: "image-backend",
        token: "token-of-the-image-backend",
        rest: &format!(
            "scopes = [\"credit\", \"admin\", \"verify\"]\ncertificate_subject = \"CN=image-backend\"\n{extra}"
        ),
    }])
}

/// Whether a client with `tls` is refused (at the handshake or its first call).
async fn refused(address: &str, tls: tonic::transport::ClientTlsConfig) -> bool {
    match endpoint(address, Some(tls)).connect().await {
        Err(_) => true,
        Ok(channel) => AdminServiceClient::new(channel).verify_ledger(VerifyLedgerRequest {}).await.is_err(),
    }
}

#[rstest]
#[tokio::test]
async fn mtls_admits_a_client_whose_certificate_a_principal_names_and_refuses_the_rest(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let pki = Pki::new(&format!("mtls-{backend:?}"));
    let rogue = Pki::new(&format!("rogue-{backend:?}"));
    let (cert, key) = pki.issue_files("server", "creditpool");
    let (backend_identity, stranger) = (pki.issue("image-backend"), pki.issue("stranger"));
    let principals = mtls_principals("");
    let mut environment = database_environment(backend).await;
    for (name, path) in [
        ("CREDITPOOL_TLS_CERT_FILE", &cert),
        ("CREDITPOOL_TLS_KEY_FILE", &key),
        ("CREDITPOOL_TLS_CLIENT_CA_FILE", &pki.ca_path),
        ("CREDITPOOL_AUTH_FILE", &principals),
    ] {
        environment.push((name, path.display().to_string()));
    }
    let health_address = free_address();
    environment.push(("CREDITPOOL_HEALTH_LISTEN_ADDR", health_address.clone()));
    let address = free_address();
    let directory = scratch_directory(&format!("mtls-{backend:?}"));
    let environment: Vec<(&str, &str)> = environment.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = ServerProcess::start_with(
        serve_command(&directory, &address, &environment),
        &address,
        Some(pki.client(Some(&backend_identity))),
    )
    .await;
    let mut admin = AdminServiceClient::new(server.channel.clone());

    let created =
        admin.create_account(CreateAccountRequest { idempotency_key: "k".into(), account_id: "by-cert".into() }).await;
    let stranger_channel =
        endpoint(&address, Some(pki.client(Some(&stranger)))).connect().await.expect("a valid chain");
    let unknown = AdminServiceClient::new(stranger_channel).verify_ledger(VerifyLedgerRequest {}).await;
    let without_certificate = refused(&address, pki.client(None)).await;
    let rogue_certificate = refused(&address, pki.client(Some(&rogue.issue("image-backend")))).await;
    let plaintext = endpoint(&address, None).connect().await;
    let probe_channel = endpoint(&health_address, None).connect().await.expect("the health port speaks plaintext");
    let probed = tonic_health::pb::health_client::HealthClient::new(probe_channel)
        .check(tonic_health::pb::HealthCheckRequest { service: "readiness".into() })
        .await
        .map(|r| r.into_inner().status());
    let verified = admin.verify_ledger(VerifyLedgerRequest {}).await.expect("VerifyLedger").into_inner();
    server.stop().await;

    assert_eq!(
        probed.expect("a probe without TLS is answered"),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    assert!(created.is_ok(), "the certificate authenticates image-backend: {created:?}");
    assert_eq!(unknown.expect_err("no principal names CN=stranger").code(), Code::Unauthenticated);
    assert!(without_certificate, "a client without a certificate is refused under mTLS");
    assert!(rogue_certificate, "a certificate of another CA is refused");
    let plaintext_works = match plaintext {
        Ok(channel) => AdminServiceClient::new(channel).verify_ledger(VerifyLedgerRequest {}).await.is_ok(),
        Err(_) => false,
    };
    assert!(!plaintext_works, "a TLS server speaks no plaintext");
    assert!(verified.clean);
}

#[rstest]
#[tokio::test]
async fn sighup_rotates_tokens_and_the_certificate_without_a_restart_and_a_bad_file_keeps_the_old_ones(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let (first_ca, second_ca) = (Pki::new(&format!("first-{backend:?}")), Pki::new(&format!("second-{backend:?}")));
    let (cert, key) = first_ca.issue_files("server", "creditpool");
    let principals =
        auth_file(&[TestPrincipal { name: "console", token: "old-token", rest: r#"scopes = ["admin", "verify"]"# }]);
    let mut environment = database_environment(backend).await;
    for (name, path) in
        [("CREDITPOOL_TLS_CERT_FILE", &cert), ("CREDITPOOL_TLS_KEY_FILE", &key), ("CREDITPOOL_AUTH_FILE", &principals)]
    {
        environment.push((name, path.display().to_string()));
    }
    let address = free_address();
    let directory = scratch_directory(&format!("rotate-{backend:?}"));
    let environment: Vec<(&str, &str)> = environment.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = ServerProcess::start_with(
        serve_command(&directory, &address, &environment),
        &address,
        Some(first_ca.client(None)),
    )
    .await;
    let verify = |channel: tonic::transport::Channel, token: &'static str| async move {
        AdminServiceClient::with_interceptor(channel, Bearer::new(Some(token)))
            .verify_ledger(VerifyLedgerRequest {})
            .await
            .map(|r| r.into_inner().clean)
    };
    let hangup = || async {
        let status = tokio::process::Command::new("kill").args(["-HUP", &server.pid()]).status().await.expect("kill");
        assert!(status.success());
    };
    let before = verify(server.channel.clone(), "old-token").await;

    // Rotate: a new token, a certificate of another CA.
    let rotated =
        auth_file(&[TestPrincipal { name: "console", token: "new-token", rest: r#"scopes = ["admin", "verify"]"# }]);
    std::fs::copy(&rotated, &principals).expect("replace the auth file");
    let (new_cert, new_key) = second_ca.issue_files("server", "creditpool");
    std::fs::copy(&new_cert, &cert).expect("replace the certificate");
    std::fs::copy(&new_key, &key).expect("replace the key");
    hangup().await;
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let rotated_channel = loop {
        if let Ok(channel) = endpoint(&address, Some(second_ca.client(None))).connect().await
            && verify(channel.clone(), "new-token").await.is_ok()
        {
            break channel;
        }
        assert!(Instant::now() < deadline, "the rotated token and certificate never took effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let old_token = verify(rotated_channel.clone(), "old-token").await;
    let old_certificate_refused = endpoint(&address, Some(first_ca.client(None))).connect().await.is_err();
    // A broken file is not taken: the rotated principals stay.
    std::fs::write(&principals, "[[principal]]\nname = \"console\"\nscopes = [\"nonsense\"]\n")
        .expect("break the file");
    hangup().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_bad_file = verify(rotated_channel, "new-token").await;
    let log = server.stop().await;

    assert!(before.expect("the first token works"), "the ledger is clean");
    assert_eq!(old_token.expect_err("the old token is gone").code(), Code::Unauthenticated);
    assert!(old_certificate_refused, "new connections get the new certificate");
    assert!(after_bad_file.expect("a bad file keeps the principals in force"), "the ledger is clean");
    assert!(log.contains("auth file not reloaded"), "the log says why: {log}");
}

#[rstest]
#[tokio::test]
async fn an_admin_listener_serves_admin_service_alone_while_the_main_port_keeps_credit_service(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let environment = database_environment(backend).await;
    let admin_address = free_address();
    let mut environment: Vec<(&str, &str)> = environment.iter().map(|(k, v)| (*k, v.as_str())).collect();
    environment.push(("CREDITPOOL_ADMIN_LISTEN_ADDR", &admin_address));
    let address = free_address();
    let directory = scratch_directory(&format!("admin-listener-{backend:?}"));
    let main = ServerProcess::start(serve_command(&directory, &address, &environment), &address).await;
    let admin_channel = endpoint(&admin_address, None).connect().await.expect("the admin port accepts");
    let mut admin = AdminServiceClient::new(admin_channel.clone());
    let health = |channel: tonic::transport::Channel| async move {
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest { service: "readiness".into() })
            .await
            .map(|r| r.into_inner().status())
    };

    let on_admin_port =
        admin.create_account(CreateAccountRequest { idempotency_key: "k".into(), account_id: "split".into() }).await;
    let admin_on_main_port = AdminServiceClient::new(main.channel.clone())
        .get_account(GetAccountRequest { account_id: "split".into() })
        .await;
    let credit_on_main_port = creditpool::proto::credit_service_client::CreditServiceClient::new(main.channel.clone())
        .get_balance(GetBalanceRequest { account_id: "split".into(), workspace_id: String::new() })
        .await;
    let credit_on_admin_port =
        creditpool::proto::credit_service_client::CreditServiceClient::new(admin_channel.clone())
            .get_balance(GetBalanceRequest { account_id: "split".into(), workspace_id: String::new() })
            .await;
    let (main_health, admin_health) = (health(main.channel.clone()).await, health(admin_channel).await);
    let verified = admin.verify_ledger(VerifyLedgerRequest {}).await.expect("verify").into_inner();
    main.stop().await;

    assert!(on_admin_port.is_ok(), "{on_admin_port:?}");
    assert_eq!(admin_on_main_port.expect_err("no admin surface on the main port").code(), Code::Unimplemented);
    assert!(credit_on_main_port.is_ok(), "{credit_on_main_port:?}");
    assert_eq!(credit_on_admin_port.expect_err("no hot path on the admin port").code(), Code::Unimplemented);
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving;
    assert_eq!((main_health.expect("main health"), admin_health.expect("admin health")), (serving, serving));
    assert!(verified.clean);
}

const LIMITED: &str = "token-of-a-limited-client";
const OTHER: &str = "token-of-another-client";

async fn limited_app(backend: Backend, configure: impl FnOnce(&mut creditpool::config::Config)) -> TestApp {
    let file = auth_file(&[
        TestPrincipal { name: "limited", token: LIMITED, rest: r#"scopes = ["credit", "admin", "watch", "verify"]"# },
        TestPrincipal { name: "other", token: OTHER, rest: r#"scopes = ["credit", "admin", "watch", "verify"]"# },
    ]);
    spawn_app_with_token(backend, LIMITED, |config| {
        config.auth_file = Some(file);
        configure(config);
    })
    .await
}

#[rstest]
#[tokio::test]
async fn notification_streams_beyond_the_limits_are_refused_and_a_closed_one_frees_its_place(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = limited_app(backend, |config| {
        config.max_notification_streams = 3;
        config.max_notification_streams_per_principal = 2;
    })
    .await;
    let open = |token: &'static str| {
        let mut admin = app.admin_as(Some(token));
        async move { admin.watch_notifications(WatchNotificationsRequest::default()).await.map(|r| r.into_inner()) }
    };

    let first = open(LIMITED).await.expect("first stream");
    let _second = open(LIMITED).await.expect("second stream");
    let third_of_one_principal = open(LIMITED).await;
    let _other = open(OTHER).await.expect("another principal's stream");
    let fourth_overall = open(OTHER).await;
    drop(first);
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let reopened = loop {
        match open(LIMITED).await {
            Ok(stream) => break stream,
            Err(status) => assert!(Instant::now() < deadline, "the closed stream's place never came back: {status:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    for refused in [third_of_one_principal, fourth_overall] {
        let status = refused.expect_err("over a limit");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("notification streams"), "{status:?}");
    }
    drop(reopened);
    app.assert_ledger_clean().await;
}

/// Holds the write lock on the workspace `team` from outside the server until dropped (rolled
/// back): Postgres row lock, SQLite write lock.
async fn block_writes(app: &TestApp, backend: Backend) -> sqlx::pool::PoolConnection<sqlx::Any> {
    let mut connection = app.db.acquire().await.expect("a connection");
    let statements = match backend {
        Backend::Postgres => "BEGIN; SELECT 1 FROM workspaces WHERE workspace_id = 'team' FOR UPDATE",
        Backend::Sqlite => "BEGIN IMMEDIATE",
    };
    sqlx::raw_sql(statements).execute(&mut *connection).await.expect("lock");
    connection
}

async fn unblock(mut connection: sqlx::pool::PoolConnection<sqlx::Any>) {
    sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await.expect("unlock");
}

#[rstest]
#[tokio::test]
async fn a_call_past_the_deadline_cap_is_cut_and_its_retry_is_answered_once_the_database_frees(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    // Long enough that set-up calls on a loaded test machine stay under it.
    let app = limited_app(backend, |config| {
        config.max_call_duration_ms = 3_000;
        // The database waits must outlast the cap, so that the cap is what cuts the call.
        config.statement_timeout_ms = 120_000;
        config.database_acquire_timeout_ms = 120_000;
    })
    .await;
    app.hot_path_example().await;
    let blocker = block_writes(&app, backend).await;

    let started = Instant::now();
    let cut = app.consume("slow", "member-a", "team", 5).await;
    let waited = started.elapsed();
    unblock(blocker).await;
    // UNAVAILABLE is "retry": the health check may still be catching up with the freed database.
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let retried = loop {
        match app.consume("slow", "member-a", "team", 5).await {
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            answer => break answer,
        }
    };

    let status = cut.expect_err("cut at the cap");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(20),
        "cut at the 3 s cap, not at a database timeout (30 s on SQLite, 120 s statement timeout here): {waited:?}"
    );
    assert_eq!(retried.expect("the retry is answered").amount_credits, 5);
    assert_eq!(app.balance("member-a", "team").await.monthly.expect("monthly").used_credits, 5, "charged once");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_concurrency_limit_is_shed_while_admitted_calls_finish(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = std::sync::Arc::new(
        limited_app(backend, |config| {
            config.max_concurrent_calls = 4;
            config.statement_timeout_ms = 120_000;
            // SQLite's one connection waits on the lock too, so a health ping during the test
            // would fail and fail calls fast; this test is about the concurrency limit alone.
            config.health_check_interval_ms = 600_000;
        })
        .await,
    );
    app.hot_path_example().await;
    let blocker = block_writes(&app, backend).await;

    // While the lock is held the four admitted calls cannot finish; every other call is shed.
    let calls: Vec<_> = (0..24)
        .map(|i| {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move { app.consume(&format!("flood-{i}"), "member-a", "team", 1).await })
        })
        .collect();
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let finished = calls.iter().filter(|call| call.is_finished()).count();
        if finished >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "only {finished} of 24 calls came back while four were admitted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health_under_load = app
        .health
        .clone()
        .check(tonic_health::pb::HealthCheckRequest { service: "readiness".into() })
        .await
        .map(|r| r.into_inner().status());
    unblock(blocker).await;
    let results = join_all(calls).await;

    let (admitted, shed): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!((admitted.len(), shed.len()), (4, 20), "four admitted, twenty shed");
    for status in shed.into_iter().filter_map(Result::err) {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(status.message().contains("concurrency limit"), "{status:?}");
    }
    assert_eq!(
        health_under_load.expect("probes are never shed"),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    assert_eq!(
        app.balance("member-a", "team").await.monthly.expect("monthly").used_credits,
        4,
        "only the admitted four"
    );
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn postgres_over_tls_verify_full_serves_and_the_server_refuses_plaintext() {
    let (url, pki) = crate::postgres::tls_cluster();
    let rogue = Pki::new("postgres-rogue");
    let name = format!("creditpool_test_tls_{}", crate::postgres::run_id());
    let verified = |ca: &std::path::Path, database: &str| {
        format!("{url}/{database}?sslmode=verify-full&sslrootcert={}", ca.display())
    };
    let mut maintenance = <sqlx::PgConnection as sqlx::Connection>::connect(&verified(&pki.ca_path, "postgres"))
        .await
        .expect("a verify-full connection");
    crate::postgres::recreate_database(&mut maintenance, &name).await;

    let plaintext = <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{url}/postgres?sslmode=disable")).await;
    let wrong_ca = <sqlx::PgConnection as sqlx::Connection>::connect(&verified(&rogue.ca_path, "postgres")).await;
    let app = crate::helpers::spawn_app_on(verified(&pki.ca_path, &name)).await;
    app.hot_path_example().await;
    let consumed = app.consume("over-tls", "member-a", "team", 7).await;

    assert!(plaintext.expect_err("the cluster refuses plaintext").to_string().contains("no encryption"));
    assert!(wrong_ca.is_err(), "verify-full refuses a server certificate of another CA");
    assert_eq!(consumed.expect("consume over TLS").amount_credits, 7);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn a_principal_over_its_rate_is_refused_while_another_principal_is_not(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = limited_app(backend, |config| {
        config.rate_limit_per_second = 1;
        config.rate_limit_burst = 3;
    })
    .await;
    let read = |token: &'static str| {
        let mut admin = app.admin_as(Some(token));
        async move { admin.get_account(GetAccountRequest { account_id: "nobody".into() }).await }
    };

    let mut limited = Vec::new();
    for _ in 0..4 {
        limited.push(read(LIMITED).await.map(drop).map_err(|status| status.code()));
    }
    let other = read(OTHER).await.map(drop).map_err(|status| status.code());

    assert_eq!(&limited[..3], &[Err(Code::NotFound); 3], "the burst is served (the account does not exist)");
    assert_eq!(limited[3], Err(Code::ResourceExhausted), "over the rate");
    assert_eq!(other, Err(Code::NotFound), "the other principal has its own bucket");
}

#[rstest]
#[tokio::test]
async fn a_request_larger_than_the_limit_is_refused_and_changes_nothing(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = limited_app(backend, |config| config.max_request_bytes = 4_096).await;
    app.hot_path_example().await;
    let before = app.snapshot().await;

    let huge = app.consume(&"k".repeat(8_192), "member-a", "team", 1).await;

    assert_eq!(huge.expect_err("over max_request_bytes").code(), Code::OutOfRange);
    assert_eq!(app.snapshot().await, before);
    app.assert_ledger_clean().await;
}
