//! The real grpcurl (reflection v1alpha) and buf curl (reflection v1) work without proto files.

use tokio::process::Command;

use rstest::rstest;

use crate::helpers::{Backend, spawn_app, tool};
use crate::process::{ServerProcess, free_address, scratch_directory, serve_command};

async fn run(program: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().await.expect("run the client");
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[rstest]
#[tokio::test]
async fn grpcurl_lists_the_services_and_creates_an_account_through_reflection(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let grpcurl = tokio::task::spawn_blocking(|| tool("grpcurl")).await.expect("install grpcurl");
    let app = spawn_app(backend).await;
    let address = app.address.to_string();

    let services = run(&grpcurl, &["-plaintext", &address, "list"]).await;
    let created = run(
        &grpcurl,
        &[
            "-plaintext",
            "-d",
            r#"{"idempotency_key": "cli-1", "account_id": "from-grpcurl"}"#,
            &address,
            "creditpool.v1.AdminService/CreateAccount",
        ],
    )
    .await;

    for service in ["creditpool.v1.AdminService", "creditpool.v1.CreditService", "grpc.health.v1.Health"] {
        assert!(services.contains(service), "{service} not listed: {services}");
    }
    assert!(created.contains("from-grpcurl"), "{created}");
    assert_eq!(app.account("from-grpcurl").await.account_id, "from-grpcurl");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn buf_curl_lists_the_services_and_creates_an_account_through_reflection_v1(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let buf = tokio::task::spawn_blocking(|| tool("buf")).await.expect("install buf");
    let app = spawn_app(backend).await;
    let base = format!("http://{}", app.address);
    let common = ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--reflect-protocol", "grpc-v1"];

    let services = run(&buf, &[&common[..], &["--list-services", &base]].concat()).await;
    let method = format!("{base}/creditpool.v1.AdminService/CreateAccount");
    let created = run(
        &buf,
        &[&common[..], &["-d", r#"{"idempotency_key": "cli-2", "account_id": "from-buf"}"#, &method]].concat(),
    )
    .await;

    for service in ["creditpool.v1.AdminService", "creditpool.v1.CreditService"] {
        assert!(services.contains(service), "{service} not listed: {services}");
    }
    assert!(created.contains("from-buf"), "{created}");
    assert_eq!(app.account("from-buf").await.account_id, "from-buf");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn readme_walkthrough_sets_up_the_design_example(#[values(Backend::Postgres, Backend::Sqlite)] backend: Backend) {
    let grpcurl = tokio::task::spawn_blocking(|| tool("grpcurl")).await.expect("install grpcurl");
    let app = spawn_app(backend).await;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let walkthrough = section(&readme, "## Walkthrough with grpcurl");
    let lines: Vec<&str> = walkthrough.lines().filter(|line| line.starts_with("grpcurl ")).collect();
    let path = format!("{}:{}", grpcurl.parent().expect("dir").display(), std::env::var("PATH").unwrap_or_default());

    let mut outputs = Vec::new();
    for line in &lines {
        let script = format!("S={}\n{line}", app.address);
        outputs.push(run(std::path::Path::new("sh"), &["-c", &format!("PATH='{path}'; {script}")]).await);
    }

    assert!(lines.len() >= 12, "the walkthrough lost its lines: {lines:?}");
    let workspace =
        outputs.iter().rev().find(|out| out.contains("monthlyUnallocatedCredits")).expect("GetWorkspace output");
    for expected in [
        r#""monthlyPoolCredits": "500""#,
        r#""monthlyReservedCredits": "300""#,
        r#""monthlyUnallocatedCredits": "200""#,
    ] {
        assert!(workspace.contains(expected), "{expected} missing from {workspace}");
    }
    assert_eq!(app.account("owner").await.monthly_credits, 500);
    let balance = app.balance("member-b", "team").await;
    assert_eq!((balance.spendable_credits, balance.monthly.expect("monthly").used_credits), (125, 25));
    assert_eq!(app.balance("member-a", "team").await.spendable_credits, 150, "A's consumption was refunded");
    assert!(outputs.iter().any(|out| out.contains(r#""status": "SERVING""#)));
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn readme_enterprise_walkthrough_draws_the_pool_and_reports_it(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let grpcurl = tokio::task::spawn_blocking(|| tool("grpcurl")).await.expect("install grpcurl");
    let app = spawn_app(backend).await;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let path = format!("{}:{}", grpcurl.parent().expect("dir").display(), std::env::var("PATH").unwrap_or_default());
    let mut outputs = Vec::new();
    for heading in ["## Walkthrough with grpcurl", "## The enterprise pool and reports with grpcurl"] {
        // A pipe into jq is the reader's own tool; the test runs the grpcurl part.
        let lines: Vec<String> = section(&readme, heading)
            .lines()
            .filter(|line| line.starts_with("grpcurl "))
            .map(|line| line.split(" | ").next().unwrap_or(line).to_owned())
            .collect();
        assert!(lines.len() >= 7, "{heading} lost its lines: {lines:?}");
        for line in lines {
            let script = format!("S={}\n{line}", app.address);
            outputs.push(run(std::path::Path::new("sh"), &["-c", &format!("PATH='{path}'; {script}")]).await);
        }
    }

    let consume = outputs.iter().find(|out| out.contains("\"consumptionKey\": \"gen-2\"")).expect("the Consume");
    assert!(consume.contains(r#""overflowUnits": "24""#), "{consume}");
    let report = outputs.iter().find(|out| out.contains("\"members\"")).expect("the usage report");
    assert!(report.contains(r#""overflowUnits": "24""#), "{report}");
    let export = outputs.last().expect("the export");
    assert_eq!(
        export.matches("\"entryId\"").count(),
        8,
        "funding, consume, hold, capture and release, refund, and the two parts of gen-2: {export}"
    );
    assert_eq!(app.workspace("team").await.overflow_pool.expect("pool").used_units, 24);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn grpcurl_decodes_the_error_details_of_an_insufficient_credits_answer(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let grpcurl = tokio::task::spawn_blocking(|| tool("grpcurl")).await.expect("install grpcurl");
    let app = spawn_app(backend).await;
    app.create_account_with_plan("poor", 10).await;
    let before = app.snapshot().await;

    let output = Command::new(&grpcurl)
        .args([
            "-plaintext",
            "-d",
            r#"{"idempotency_key": "too-much", "account_id": "poor", "amount_credits": 11}"#,
            &app.address.to_string(),
            "creditpool.v1.CreditService/Consume",
        ])
        .output()
        .await
        .expect("run grpcurl");
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));

    assert!(!output.status.success(), "the call fails: {printed}");
    assert!(printed.contains("ResourceExhausted"), "{printed}");
    assert!(printed.contains("type.googleapis.com/google.rpc.ErrorInfo"), "{printed}");
    assert!(printed.contains(r#""reason":"INSUFFICIENT_CREDITS""#), "the reason is decoded: {printed}");
    assert!(!printed.contains("not recognized"), "{printed}");
    assert_eq!(app.snapshot().await, before, "a refused call changes nothing");
    app.assert_ledger_clean().await;
}

/// The text of the README section that starts with `heading`, up to the next `## `.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme.find(heading).unwrap_or_else(|| panic!("the README has no {heading}"));
    let rest = &readme[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// The contents of the ```sh blocks of `text`, in order.
fn shell_blocks(text: &str) -> Vec<String> {
    text.split("```sh\n").skip(1).map(|block| block.split("```").next().unwrap_or("").trim().to_owned()).collect()
}

#[tokio::test]
async fn the_readme_first_screen_runs_as_written() {
    let grpcurl = tokio::task::spawn_blocking(|| tool("grpcurl")).await.expect("install grpcurl");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let first_screen = &readme[..readme.find("\n## Tests").expect("a Tests section after the first screen")];
    let blocks = shell_blocks(first_screen);
    assert_eq!(blocks.len(), 3, "run, test, first call: {blocks:?}");
    assert_eq!((blocks[0].as_str(), blocks[1].as_str()), ("cargo run -- serve", "cargo test"));
    let directory = scratch_directory("readme-first-screen");
    let address = free_address();
    // `cargo run -- serve` is the binary with `serve`; only the port differs, so that tests
    // never collide with a service the developer runs on 50051.
    let mut server = ServerProcess::start(serve_command(&directory, &address, &[]), &address).await;

    let path = format!("{}:{}", grpcurl.parent().expect("dir").display(), std::env::var("PATH").unwrap_or_default());
    let script = blocks[2].replace("localhost:50051", &address);
    let output = run(std::path::Path::new("sh"), &["-c", &format!("PATH='{path}'; set -e; {script}")]).await;
    let created = server
        .admin
        .get_account(creditpool::proto::GetAccountRequest { account_id: "hello".into() })
        .await
        .map(|r| r.into_inner().account.expect("account").account_id);
    let verified = server.admin.verify_ledger(creditpool::proto::VerifyLedgerRequest {}).await.expect("verify");
    server.stop().await;

    assert!(blocks[2].contains("localhost:50051"), "the first call goes to the default address");
    assert!(output.contains(r#""accountId": "hello""#), "{output}");
    assert_eq!(created.expect("the account exists"), "hello");
    assert!(verified.into_inner().clean);
}
