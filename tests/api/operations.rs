//! Operating the real binary: settings, start-up failures, logs, metrics and traces.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use creditpool::proto::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::trace::v1::Span;
use rstest::rstest;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_stream::StreamExt as _;

use crate::helpers::Backend;
use crate::postgres::{empty_database, fresh_local_database};
use crate::process::{
    ServerProcess, creditpool, database_environment, free_address, run_to_end, scratch_directory, serve_command,
};

async fn start(backend: Backend, name: &str, extra: &[(&str, &str)]) -> ServerProcess {
    let directory = scratch_directory(name);
    let address = free_address();
    let environment = database_environment(backend).await;
    let mut all: Vec<(&str, &str)> = environment.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    ServerProcess::start(serve_command(&directory, &address, &all), &address).await
}

/// An account with a plan of `monthly` credits, made through `server`.
async fn account_with_plan(server: &mut ServerProcess, account_id: &str, monthly: i64) {
    server
        .admin
        .create_account(CreateAccountRequest {
            idempotency_key: format!("new-{account_id}"),
            account_id: account_id.into(),
        })
        .await
        .expect("CreateAccount");
    server
        .admin
        .set_account_plan(SetAccountPlanRequest {
            idempotency_key: format!("plan-{account_id}"),
            account_id: account_id.into(),
            monthly_credits: monthly,
            billing_anchor: None,
        })
        .await
        .expect("SetAccountPlan");
}

fn consume(key: &str, account: &str, amount: i64) -> ConsumeRequest {
    ConsumeRequest {
        idempotency_key: key.into(),
        account_id: account.into(),
        workspace_id: String::new(),
        amount_credits: amount,
        ..Default::default()
    }
}

#[tokio::test]
async fn an_unknown_setting_in_the_environment_or_the_file_fails_start_up_naming_it() {
    let directory = scratch_directory("unknown-key");
    std::fs::write(directory.join("creditpool.toml"), "databse_url = \"sqlite:x.db\"\n").expect("config file");

    let mut from_environment = creditpool(&["serve"]);
    from_environment.current_dir(&directory).env("CREDITPOOL_LISTEN_ADR", "127.0.0.1:1");
    let (env_ok, _, env_stderr) = run_to_end(from_environment).await;
    let mut from_file = creditpool(&["serve", "--config", "creditpool.toml"]);
    from_file.current_dir(&directory);
    let (file_ok, _, file_stderr) = run_to_end(from_file).await;

    assert!(!env_ok && env_stderr.contains("listen_adr"), "{env_stderr}");
    assert!(!file_ok && file_stderr.contains("databse_url"), "{file_stderr}");
    assert!(!directory.join("data").exists(), "nothing was started");
}

#[tokio::test]
async fn creditpool_config_prints_the_effective_settings_with_the_password_redacted() {
    let mut command = creditpool(&["config"]);
    command
        .env("CREDITPOOL_DATABASE_URL", "postgres://app:s3cret@db.internal:5432/credits")
        .env("CREDITPOOL_MAX_BATCH_CALLS", "64");

    let (ok, stdout, stderr) = run_to_end(command).await;

    assert!(ok, "{stderr}");
    assert!(stdout.contains(r#"database_url = "postgres://app:***@db.internal:5432/credits""#), "{stdout}");
    assert!(stdout.contains("max_batch_calls = 64"), "{stdout}");
    assert!(stdout.contains(r#"listen_addr = "127.0.0.1:50051""#), "{stdout}");
    assert!(!stdout.contains("s3cret"), "{stdout}");
}

#[tokio::test]
async fn an_unreachable_or_missing_database_at_start_fails_saying_why() {
    let refused = format!("postgres://postgres@{}/postgres", free_address());
    let mut nothing_listening = creditpool(&["serve", "--listen-addr", &free_address()]);
    nothing_listening.env("CREDITPOOL_DATABASE_URL", &refused);
    let missing = fresh_local_database()
        .await
        .rsplit_once('/')
        .map(|(server, _)| format!("{server}/creditpool_no_such_db"))
        .expect("url");
    let mut no_such_database = creditpool(&["serve", "--listen-addr", &free_address()]);
    no_such_database.env("CREDITPOOL_DATABASE_URL", &missing);

    let (refused_ok, _, refused_stderr) = run_to_end(nothing_listening).await;
    let (missing_ok, _, missing_stderr) = run_to_end(no_such_database).await;

    assert!(!refused_ok, "{refused_stderr}");
    assert!(refused_stderr.contains("cannot reach the database"), "{refused_stderr}");
    assert!(refused_stderr.to_lowercase().contains("connection refused"), "{refused_stderr}");
    assert!(!missing_ok, "{missing_stderr}");
    assert!(missing_stderr.contains(r#""creditpool_no_such_db" does not exist"#), "{missing_stderr}");
}

#[tokio::test]
async fn a_database_refusing_plaintext_or_presenting_an_untrusted_certificate_at_start_fails_saying_why() {
    let (url, _) = crate::postgres::tls_cluster();
    let rogue = crate::pki::Pki::new("start-up-rogue");
    let start = |database_url: String| {
        let mut command = creditpool(&["serve", "--listen-addr", &free_address()]);
        command.env("CREDITPOOL_DATABASE_URL", database_url);
        run_to_end(command)
    };

    let (plain_ok, _, plain_stderr) = start(format!("{url}/postgres?sslmode=disable")).await;
    let (untrusted_ok, _, untrusted_stderr) =
        start(format!("{url}/postgres?sslmode=verify-full&sslrootcert={}", rogue.ca_path.display())).await;

    assert!(!plain_ok && plain_stderr.contains("no encryption"), "{plain_stderr}");
    assert!(!untrusted_ok, "{untrusted_stderr}");
    assert!(untrusted_stderr.contains("cannot reach the database"), "{untrusted_stderr}");
    assert!(
        untrusted_stderr.to_lowercase().contains("certificate"),
        "the cause names the certificate: {untrusted_stderr}"
    );
}

#[rstest]
#[tokio::test]
async fn serve_no_migrate_refuses_an_unmigrated_database_and_serves_once_migrate_ran(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let directory = scratch_directory(&format!("no-migrate-{backend:?}"));
    let mut environment = database_environment(backend).await;
    if backend == Backend::Postgres {
        // `fresh_database` is migrated already on Citus.
        environment.retain(|(name, _)| *name != "CREDITPOOL_DATABASE_URL");
        environment.push(("CREDITPOOL_DATABASE_URL", empty_database().await));
    }
    let command = |args: &[&str]| {
        let mut command = creditpool(args);
        command.current_dir(&directory).envs(environment.iter().map(|(k, v)| (*k, v.as_str())));
        command
    };

    let address = free_address();
    let (refused, _, refused_stderr) = run_to_end(command(&["serve", "--no-migrate", "--listen-addr", &address])).await;
    let (migrated, _, migrate_stderr) = run_to_end(command(&["migrate"])).await;
    let address = free_address();
    let mut server =
        ServerProcess::start(command(&["serve", "--no-migrate", "--listen-addr", &address]), &address).await;
    let verified = server.admin.verify_ledger(VerifyLedgerRequest {}).await.expect("VerifyLedger").into_inner();
    server.stop().await;

    assert!(!refused, "an unmigrated database must not be served");
    assert!(refused_stderr.contains("run `creditpool migrate` first"), "{refused_stderr}");
    assert!(migrated, "{migrate_stderr}");
    assert!(verified.clean);
}

#[tokio::test]
async fn a_second_server_on_the_same_sqlite_file_exits_non_zero_saying_the_file_is_in_use() {
    let directory = scratch_directory("second-sqlite");
    let address = free_address();
    let mut first = ServerProcess::start(serve_command(&directory, &address, &[]), &address).await;

    let (second_ok, _, second_stderr) =
        run_to_end(serve_command(&directory, &free_address(), &[("CREDITPOOL_SHUTDOWN_DRAIN_DELAY_MS", "0")])).await;
    let still_served = first.admin.verify_ledger(VerifyLedgerRequest {}).await;
    first.stop().await;

    assert!(!second_ok, "a second server must not share the file");
    assert!(second_stderr.contains("is in use by another creditpool process"), "{second_stderr}");
    assert!(still_served.is_ok_and(|r| r.into_inner().clean), "the first server is unaffected");
}

#[rstest]
#[tokio::test]
async fn json_logs_are_one_object_per_line_with_an_access_line_per_rpc_and_text_logs_carry_no_colour_codes(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let mut json = start(backend, &format!("json-{backend:?}"), &[("CREDITPOOL_LOG_FORMAT", "json")]).await;
    account_with_plan(&mut json, "logged", 10).await;
    let refused = json.credit.consume(consume("too-much", "logged", 11)).await;
    assert!(json.admin.verify_ledger(VerifyLedgerRequest {}).await.expect("verify").into_inner().clean);
    let json_log = json.stop().await;
    let mut text = start(backend, &format!("text-{backend:?}"), &[]).await;
    account_with_plan(&mut text, "logged", 10).await;
    let text_log = text.stop().await;

    assert_eq!(refused.expect_err("more than the plan").code(), tonic::Code::ResourceExhausted);
    let lines: Vec<serde_json::Value> = json_log
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let access = |rpc: &str, code: &str| {
        lines.iter().any(|line| {
            line["message"] == "rpc" && line["rpc"] == rpc && line["code"] == code && line["principal"] == "anonymous"
        })
    };
    assert!(access("creditpool.v1.AdminService/CreateAccount", "OK"), "{json_log}");
    assert!(access("creditpool.v1.CreditService/Consume", "RESOURCE_EXHAUSTED"), "{json_log}");
    let audited = lines.iter().any(|line| {
        line["target"] == "creditpool::audit"
            && line["rpc"] == "creditpool.v1.AdminService/SetAccountPlan"
            && line["principal"] == "anonymous"
            && line["account_id"] == "logged"
            && line["code"] == "OK"
    });
    assert!(audited, "an admin mutation writes its audit line: {json_log}");
    assert!(
        !lines
            .iter()
            .any(|line| line["target"] == "creditpool::audit" && line["rpc"] == "creditpool.v1.CreditService/Consume"),
        "the hot path is not audited line by line"
    );
    assert!(text_log.contains("rpc=creditpool.v1.AdminService/CreateAccount"), "{text_log}");
    assert!(!text_log.contains('\u{1b}'), "ANSI codes in a log that is not a terminal: {text_log:?}");
}

/// The text of `/metrics` on `address`.
async fn scrape(address: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect to the metrics listener");
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n").await.expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("response");
    assert!(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

/// Whether a sample line of `metric` carries every label in `labels` and the value `value`
/// (any value when `None`).
fn has_sample(text: &str, metric: &str, labels: &[&str], value: Option<&str>) -> bool {
    text.lines().any(|line| {
        line.starts_with(metric)
            && labels.iter().all(|label| line.contains(label))
            && value.is_none_or(|value| line.rsplit(' ').next() == Some(value))
    })
}

#[rstest]
#[tokio::test]
async fn metrics_report_rpcs_by_method_and_code_batches_holds_and_subscribers(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let metrics_address = free_address();
    let mut server = start(
        backend,
        &format!("metrics-{backend:?}"),
        &[("CREDITPOOL_METRICS_LISTEN_ADDR", &metrics_address), ("CREDITPOOL_HEALTH_CHECK_INTERVAL_MS", "100")],
    )
    .await;
    account_with_plan(&mut server, "measured", 100).await;
    for key in ["one", "two", "three"] {
        server.credit.consume(consume(key, "measured", 1)).await.expect("consume");
    }
    let _ = server.credit.consume(consume("too-much", "measured", 1_000)).await;
    server
        .credit
        .reserve(ReserveRequest {
            reservation_key: "job".into(),
            account_id: "measured".into(),
            workspace_id: String::new(),
            amount_credits: 5,
            ttl_seconds: 600,
            ..Default::default()
        })
        .await
        .expect("reserve");
    let mut stream = server
        .admin
        .watch_notifications(WatchNotificationsRequest::default())
        .await
        .expect("WatchNotifications")
        .into_inner();

    let consume = r#"method="creditpool.v1.CreditService/Consume""#;
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = scrape(&metrics_address).await;
        let settled = has_sample(&text, "creditpool_notification_subscribers", &[], Some("1"))
            && has_sample(&text, "creditpool_open_holds", &[], Some("1"));
        if settled || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(stream.next());
    server.stop().await;

    assert!(has_sample(&text, "creditpool_rpc_requests_total", &[consume, r#"code="OK""#], Some("3")), "{text}");
    assert!(
        has_sample(&text, "creditpool_rpc_requests_total", &[consume, r#"code="RESOURCE_EXHAUSTED""#], Some("1")),
        "{text}"
    );
    assert!(has_sample(&text, "creditpool_rpc_duration_seconds_bucket", &[consume, r#"le="0.005""#], None), "{text}");
    assert!(
        has_sample(&text, "creditpool_rpc_duration_seconds_count", &[consume, r#"code="OK""#], Some("3")),
        "{text}"
    );
    assert!(has_sample(&text, "creditpool_batch_calls_count", &[], None), "{text}");
    assert!(has_sample(&text, "creditpool_batch_commit_duration_seconds_bucket", &[], None), "{text}");
    assert!(has_sample(&text, "creditpool_notification_subscribers", &[], Some("1")), "{text}");
    assert!(has_sample(&text, "creditpool_open_holds", &[], Some("1")), "{text}");
    assert!(has_sample(&text, "creditpool_db_pool_connections", &[r#"state="idle""#], None), "{text}");
    assert!(has_sample(&text, "creditpool_outbox_lag_seconds", &[], None), "{text}");
}

/// An OTLP/gRPC trace receiver that keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|resource| resource.scope_spans)
            .flat_map(|scope| scope.spans);
        self.spans.lock().expect("lock").extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
        let address = listener.local_addr().expect("address");
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (receiver, format!("http://{address}"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[rstest]
#[tokio::test]
async fn an_rpc_span_reaches_the_otlp_receiver_as_a_child_of_the_callers_traceparent(
    #[values("CREDITPOOL_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")] endpoint_variable: &str,
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let (receiver, endpoint) = Receiver::start().await;
    let name = format!("traces-{endpoint_variable}-{backend:?}");
    let mut server = start(backend, &name, &[(endpoint_variable, &endpoint)]).await;
    let (trace_id, parent_id) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let mut request = tonic::Request::new(CreateAccountRequest {
        idempotency_key: "traced".into(),
        account_id: "traced-account".into(),
    });
    request
        .metadata_mut()
        .insert("traceparent", format!("00-{trace_id}-{parent_id}-01").parse().expect("header value"));

    server.admin.create_account(request).await.expect("CreateAccount");
    server.stop().await; // flushes the exporter

    let spans = receiver.spans.lock().expect("lock").clone();
    let rpc = spans
        .iter()
        .find(|span| span.name == "creditpool.v1.AdminService/CreateAccount")
        .unwrap_or_else(|| panic!("no RPC span among {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>()));
    assert_eq!(hex(&rpc.trace_id), trace_id);
    assert_eq!(hex(&rpc.parent_span_id), parent_id);
    assert!(
        spans.iter().any(|span| span.name == "db.transaction" && span.parent_span_id == rpc.span_id),
        "the database transaction is a child of the RPC span"
    );
}
