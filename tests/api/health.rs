//! grpc.health.v1.Health: liveness says the process is up, readiness follows the database, and
//! SIGTERM drains.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use creditpool::jobs::{LIVENESS, READINESS};
use creditpool::proto::GetAccountRequest;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{Backend, CuttableProxy, spawn_app_with};
use crate::postgres::{database_server_url, fresh_database};
use crate::process::{ServerProcess, creditpool, free_address};

/// Generous bound on how long a state change may take to show; the test asserts order, not speed.
const STATE_CHANGE_DEADLINE: Duration = Duration::from_secs(30);

/// `host:port` of a database URL.
fn authority(url: &str) -> &str {
    let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
    let host_port = &rest[..rest.find('/').unwrap_or(rest.len())];
    host_port.rsplit('@').next().unwrap_or(host_port)
}

async fn statuses(health: &mut HealthClient<Channel>, names: &[&str]) -> Vec<Option<ServingStatus>> {
    let mut statuses = Vec::new();
    for service in names {
        let status =
            health.check(HealthCheckRequest { service: (*service).into() }).await.ok().map(|r| r.into_inner().status());
        statuses.push(status);
    }
    statuses
}

/// Waits until every name in `names` reports `wanted`.
pub async fn wait_for_health(health: &mut HealthClient<Channel>, names: &[&str], wanted: ServingStatus) {
    let deadline = Instant::now() + STATE_CHANGE_DEADLINE;
    loop {
        let now = statuses(health, names).await;
        if now.iter().all(|status| *status == Some(wanted)) {
            return;
        }
        assert!(Instant::now() < deadline, "health of {names:?} never became {wanted:?}: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The health names the chart's (startup, liveness, readiness) probes ask with `values`, after
/// checking each asks the port the server serves health on: the gRPC port, or with TLS the
/// plaintext health port.
fn chart_probes(values: &str) -> [String; 3] {
    let objects = crate::helpers::chart_objects(values);
    let kind = |kind: &str| objects.iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind}")).clone();
    let container = kind("Deployment")["spec"]["template"]["spec"]["containers"][0].clone();
    let settings = kind("ConfigMap")["data"].clone();
    let (port_name, setting) = if settings.get("CREDITPOOL_TLS_CERT_FILE").is_some() {
        ("health", "CREDITPOOL_HEALTH_LISTEN_ADDR")
    } else {
        ("grpc", "CREDITPOOL_LISTEN_ADDR")
    };
    let grpc_port = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|port| port["name"] == port_name)
        .and_then(|port| port["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("a {port_name} container port"));
    let listen = settings[setting].as_str().unwrap_or_else(|| panic!("{setting} is set")).to_owned();
    assert!(listen.ends_with(&format!(":{grpc_port}")), "the server serves health on the probed port: {listen}");
    ["startupProbe", "livenessProbe", "readinessProbe"].map(|probe| {
        let grpc = &container[probe]["grpc"];
        assert_eq!(grpc["port"].as_u64(), Some(grpc_port), "{probe} asks the gRPC port");
        grpc["service"].as_str().unwrap_or_else(|| panic!("{probe} names a health service")).to_owned()
    })
}

#[tokio::test]
async fn the_charts_probes_ask_served_health_names_and_only_readiness_follows_the_database() {
    let [startup, liveness, readiness] =
        tokio::task::spawn_blocking(|| chart_probes("default")).await.expect("render the chart");
    let with_tls = tokio::task::spawn_blocking(|| chart_probes("production")).await.expect("render the chart");
    assert_eq!(with_tls, [startup.clone(), liveness.clone(), readiness.clone()], "TLS changes the port, not the names");
    let alive = [startup.as_str(), liveness.as_str()];
    let target: SocketAddr = tokio::net::lookup_host(authority(&database_server_url()))
        .await
        .expect("resolve the test Postgres")
        .next()
        .expect("an address");
    let proxy = CuttableProxy::start(target).await;
    let proxy_address = proxy.address;
    let app = spawn_app_with(Backend::Postgres, |config| {
        let url = config.database_url.take().expect("url");
        config.database_url = Some(url.replacen(authority(&url), &proxy_address.to_string(), 1));
        // Long, so a call that waited for a connection instead of failing fast would show.
        config.database_acquire_timeout_ms = 10_000;
    })
    .await;
    let mut health = app.health.clone();

    wait_for_health(&mut health, &[readiness.as_str()], ServingStatus::Serving).await;
    wait_for_health(&mut health, &READINESS, ServingStatus::Serving).await;
    let alive_before = statuses(&mut health, &alive).await;
    proxy.cut();
    wait_for_health(&mut health, &[readiness.as_str()], ServingStatus::NotServing).await;
    wait_for_health(&mut health, &READINESS, ServingStatus::NotServing).await;
    let alive_during_outage = statuses(&mut health, &[&alive[..], &LIVENESS[..]].concat()).await;
    let asked = Instant::now();
    let during_outage = app.admin.clone().get_account(GetAccountRequest { account_id: "anyone".into() }).await;
    let answered_after = asked.elapsed();
    proxy.restore();
    wait_for_health(&mut health, &[readiness.as_str()], ServingStatus::Serving).await;

    assert_eq!(alive_before, vec![Some(ServingStatus::Serving); 2], "the probes' names are served");
    assert!(
        alive_during_outage.iter().all(|status| *status == Some(ServingStatus::Serving)),
        "liveness must not follow the database: {alive_during_outage:?}"
    );
    assert_eq!(during_outage.expect_err("database is down").code(), Code::Unavailable);
    assert!(
        answered_after < Duration::from_secs(5),
        "known down, the call fails fast instead of waiting the 10 s acquire timeout: {answered_after:?}"
    );
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn sigterm_turns_health_not_serving_then_the_process_exits_zero() {
    let address = free_address();
    let mut command = creditpool(&["serve", "--listen-addr", &address]);
    command
        .env("CREDITPOOL_DATABASE_URL", fresh_database().await)
        .env("CREDITPOOL_HEALTH_CHECK_INTERVAL_MS", "100")
        .env("CREDITPOOL_SHUTDOWN_DRAIN_DELAY_MS", "2000");
    let server = ServerProcess::start(command, &address).await;
    let mut health = server.health.clone();
    let every_name = [&LIVENESS[..], &READINESS[..]].concat();
    wait_for_health(&mut health, &every_name, ServingStatus::Serving).await;

    server.terminate().await;
    wait_for_health(&mut health, &every_name, ServingStatus::NotServing).await;
    server.wait().await;
}
