//! Organisation reports (issue 9, item 7): GetUsageReport equal to the journal and to the
//! charges, ListJournalEntries with filters and a cursor that never skips or repeats under
//! concurrent writes, and ExportJournal streaming in journal order.

use std::collections::{BTreeMap, BTreeSet};

use creditpool::proto::*;
use rstest::rstest;
use tokio_stream::StreamExt as _;

use crate::helpers::{Backend, TestApp, key, spawn_app};

const ORG: &str = "org";
const OWNER: &str = "owner";

/// A workspace whose members alice and carol (in a pool-access profile) and bob (not) hold a
/// monthly allowance of 20 and a top-up allowance of 5; the overflow pool has a quota of 30
/// units at 3 units per 2 credits.
async fn organisation(app: &TestApp) {
    app.create_account_with_plan(OWNER, 1_000).await;
    app.buy(OWNER, 100).await;
    app.create_workspace(ORG, OWNER).await;
    app.set_pool_size(ORG, OWNER, 500).await.expect("pool size");
    app.admin
        .clone()
        .top_up_workspace(TopUpWorkspaceRequest {
            idempotency_key: key(),
            workspace_id: ORG.into(),
            actor_account_id: OWNER.into(),
            amount_credits: 50,
        })
        .await
        .expect("top-up");
    for member in ["alice", "bob", "carol"] {
        app.create_account(member).await;
        app.add_member(ORG, OWNER, member, Role::Editor).await.expect("member");
        app.set_allowance(ORG, OWNER, member, 20, 5).await.expect("allowance");
    }
    configure(app, "2026").await;
    crate::overflow::profile(app, "pool", false, &["alice", "carol"]).await;
}

/// The overflow pool of the reports: 30 units at 3 units per 2 credits, no overage limit.
async fn configure(app: &TestApp, period: &str) {
    crate::overflow::configure(app, 30, 3, 2, None, period).await;
}

async fn usage_report(app: &TestApp, request: GetUsageReportRequest) -> GetUsageReportResponse {
    app.admin.clone().get_usage_report(request).await.expect("GetUsageReport").into_inner()
}

/// (bucket, credits, units, overage units) of each part.
fn usage(parts: &[SplitPart]) -> Vec<(Bucket, i64, i64, i64)> {
    parts.iter().map(|p| (p.bucket(), p.amount_credits, p.overflow_units, p.overage_units)).collect()
}

/// Every journal entry of the workspace, through ListJournalEntries pages of `page_size`.
async fn journal(app: &TestApp, filter: Option<JournalFilter>, page_size: u32) -> Vec<JournalEntry> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .admin
            .clone()
            .list_journal_entries(ListJournalEntriesRequest {
                workspace_id: ORG.into(),
                page_size,
                page_token,
                filter: filter.clone(),
                ..Default::default()
            })
            .await
            .expect("ListJournalEntries")
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        page_token = page.next_page_token;
    }
}

#[rstest]
#[tokio::test]
async fn the_usage_report_gives_each_members_split_and_the_overage_equal_to_the_journal_and_the_charges(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    organisation(&app).await;

    // alice: 20 monthly + 5 top-up + 15 overflow (23 units: 23 of quota); then a refund of 4
    // (overflow first: 6 units back). carol: 5 credits past her allowances cost 8 units, then 25
    // more cost 38: the quota's last 5 and 33 of overage. bob: his allowances only.
    app.consume("a1", "alice", ORG, 40).await.expect("alice");
    app.refund("a1", "alice", ORG, Some(4)).await.expect("alice refund");
    app.consume("c1", "carol", ORG, 30).await.expect("carol");
    app.consume("c2", "carol", ORG, 25).await.expect("carol overage");
    app.consume("b1", "bob", ORG, 22).await.expect("bob");
    app.reserve("held", "bob", ORG, 2, 0).await.expect("an open hold is not consumption");

    let report = usage_report(&app, GetUsageReportRequest { workspace_id: ORG.into(), ..Default::default() }).await;

    let by_member: BTreeMap<String, Vec<(Bucket, i64, i64, i64)>> =
        report.members.iter().map(|m| (m.account_id.clone(), usage(&m.consumed))).collect();
    assert_eq!(
        by_member["alice"],
        vec![(Bucket::WorkspaceMonthly, 20, 0, 0), (Bucket::WorkspaceTopUp, 5, 0, 0), (Bucket::Overflow, 11, 17, 0)]
    );
    assert_eq!(
        by_member["carol"],
        vec![(Bucket::WorkspaceMonthly, 20, 0, 0), (Bucket::WorkspaceTopUp, 5, 0, 0), (Bucket::Overflow, 30, 46, 33)]
    );
    assert_eq!(by_member["bob"], vec![(Bucket::WorkspaceMonthly, 20, 0, 0), (Bucket::WorkspaceTopUp, 2, 0, 0)]);
    let pool = app.workspace(ORG).await.overflow_pool.expect("pool");
    assert_eq!((report.overflow_units, report.overage_units), (pool.used_units, pool.overage_units));
    assert_eq!((report.overflow_units, report.overage_units), (17 + 46, 33));

    // The totals are the journal's own sums, entry by entry.
    let entries = journal(&app, None, 0).await;
    let mut consumed: BTreeMap<String, i64> = BTreeMap::new();
    for entry in &entries {
        let sign = match (entry.to_bucket.as_str(), entry.from_bucket.as_str()) {
            ("consumed", _) => 1,
            (_, "consumed") => -1,
            _ => 0,
        };
        *consumed.entry(entry.part.clone()).or_default() += sign * entry.amount_credits;
    }
    let totals: BTreeMap<String, i64> = report
        .totals
        .iter()
        .map(|part| {
            let name = match part.bucket() {
                Bucket::WorkspaceMonthly => "monthly",
                Bucket::WorkspaceTopUp => "top_up",
                _ => "overflow",
            };
            (name.to_owned(), part.amount_credits)
        })
        .collect();
    consumed.retain(|_, credits| *credits != 0);
    assert_eq!(totals, consumed);

    // A contract period is reported by its label, also once closed.
    configure(&app, "2027").await;
    app.consume("a2", "alice", ORG, 1).await.expect("new period");
    let closed = usage_report(
        &app,
        GetUsageReportRequest { workspace_id: ORG.into(), contract_period: "2026".into(), ..Default::default() },
    )
    .await;
    assert_eq!((closed.overflow_units, closed.overage_units), (63, 33));
    let current = usage_report(
        &app,
        GetUsageReportRequest { workspace_id: ORG.into(), contract_period: "2027".into(), ..Default::default() },
    )
    .await;
    assert_eq!(usage(&current.totals), vec![(Bucket::Overflow, 1, 2, 0)]);
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn journal_pages_never_skip_or_repeat_an_entry_while_others_are_written_and_filters_select_exactly(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    organisation(&app).await;
    for member in ["alice", "bob", "carol"] {
        app.set_allowance(ORG, OWNER, member, 100, 0).await.expect("allowance");
    }
    let writer = {
        let credit = app.credit.clone();
        tokio::spawn(async move {
            for i in 0..120 {
                let member = ["alice", "bob", "carol"][i % 3];
                let request = ConsumeRequest {
                    idempotency_key: format!("w{i}"),
                    account_id: member.into(),
                    workspace_id: ORG.into(),
                    amount_credits: 1,
                    ..Default::default()
                };
                credit.clone().consume(request).await.expect("consume");
            }
        })
    };
    // Page through while the writer runs, then on until the writer's last entries are in.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        // Read before the page: an empty page fetched before the writer's last commit must not end
        // the paging once the writer is seen finished.
        let writer_finished = writer.is_finished();
        let page = app
            .admin
            .clone()
            .list_journal_entries(ListJournalEntriesRequest {
                workspace_id: ORG.into(),
                page_size: 7,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        seen.extend(page.entries.iter().map(|entry| entry.entry_id));
        if !page.next_page_token.is_empty() {
            page_token = page.next_page_token;
        } else if writer_finished && page.entries.is_empty() {
            break;
        } else if let Some(last) = page.entries.last() {
            page_token = last.entry_id.to_string();
        }
    }
    writer.await.expect("writer");
    let all: Vec<i64> = journal(&app, None, 1_000).await.iter().map(|entry| entry.entry_id).collect();
    assert_eq!(seen, all, "paging while writing saw every entry once, in order");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len());

    let bobs = journal(&app, Some(JournalFilter { member_account_id: "bob".into(), ..Default::default() }), 10).await;
    assert_eq!(bobs.len(), 40);
    assert!(bobs.iter().all(|entry| entry.member_account_id == "bob"));
    let grants = journal(&app, Some(JournalFilter { cause: "pool_funding".into(), ..Default::default() }), 0).await;
    assert_eq!(grants.len(), 1);
    let future = prost_types::Timestamp { seconds: 253_402_300_000, nanos: 0 };
    let none = journal(&app, Some(JournalFilter { from_time: Some(future), ..Default::default() }), 0).await;
    assert!(none.is_empty());
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test]
async fn export_journal_streams_every_entry_in_journal_order_across_database_pages(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    organisation(&app).await;
    app.set_allowance(ORG, OWNER, "alice", 400, 0).await.expect("allowance");
    // More than two export pages of 1,000 entries.
    let writers = (0..8).map(|w| {
        let credit = app.credit.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                let request = ConsumeRequest {
                    idempotency_key: format!("e{w}-{i}"),
                    account_id: "alice".into(),
                    workspace_id: ORG.into(),
                    amount_credits: 1,
                    ..Default::default()
                };
                credit.clone().consume(request).await.expect("consume");
            }
        })
    });
    crate::helpers::join_all(writers.collect::<Vec<_>>()).await;
    let listed = journal(&app, None, 1_000).await;
    assert!(listed.len() > 2_400, "{}", listed.len());

    let mut stream = app
        .admin
        .clone()
        .export_journal(ExportJournalRequest { workspace_id: ORG.into(), ..Default::default() })
        .await
        .expect("ExportJournal")
        .into_inner();
    let mut exported = Vec::new();
    while let Some(message) = stream.next().await {
        exported.push(message.expect("entry").entry.expect("entry"));
    }
    assert_eq!(exported, listed);

    let missing = app
        .admin
        .clone()
        .export_journal(ExportJournalRequest { workspace_id: "nowhere".into(), ..Default::default() })
        .await
        .expect("the stream opens")
        .into_inner()
        .next()
        .await
        .expect("one item")
        .expect_err("an unknown workspace");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    app.assert_ledger_clean().await;
}
