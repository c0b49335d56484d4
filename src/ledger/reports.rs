//! Organisation reports, all read from the journal: usage per member and draw-chain link, the
//! journal in pages, and the journal as a stream.
//!
//! Within one scope (a workspace, or an account) every journal write holds that scope's row lock
//! until it commits, and entry ids are drawn while it is held: entry order is commit order, so an
//! entry-id cursor never skips an entry that commits later, nor repeats one.

use tokio::sync::mpsc;

use super::views::{Page, existing_account, existing_workspace};
use super::{Ledger, LedgerError};
use crate::domain::{AccountId, Credits, DrawBucket, OverflowUnits, Split, Tenant, WorkspaceId};
use crate::store::{JournalFilter, JournalRow, Lock, Store, StoreTx};

/// Entries read from the database per page of an export.
const EXPORT_PAGE: u32 = 1_000;

/// What a usage report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportRange {
    /// Entries written in [`from_ms`, `to_ms`); `None` is the beginning, or now.
    Time {
        /// Start (inclusive).
        from_ms: Option<i64>,
        /// End (exclusive).
        to_ms: Option<i64>,
    },
    /// The overflow pool's contract period with this label: the current one, or the latest closed
    /// one.
    ContractPeriod(String),
}

/// One member's net usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberUsage {
    /// The member.
    pub account_id: AccountId,
    /// Credits consumed net of refunds, by link.
    pub consumed: Split,
    /// Overflow units net of returns.
    pub units: OverflowUnits,
}

/// A workspace's usage over a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReport {
    /// By member, in account order.
    pub members: Vec<MemberUsage>,
    /// Every member together.
    pub totals: Split,
    /// Every member's overflow units together.
    pub units: OverflowUnits,
    /// Start of the range (unix ms).
    pub from_ms: i64,
    /// End of the range (unix ms, exclusive).
    pub to_ms: i64,
}

impl<S: Store> Ledger<S> {
    /// The usage report: the journal's sums per member and link over the range.
    pub async fn usage_report(
        &self,
        workspace_id: &WorkspaceId,
        range: &ReportRange,
    ) -> Result<UsageReport, LedgerError> {
        self.retrying(|| async {
            let mut tx = self.store.begin().await?;
            let workspace = existing_workspace(&mut tx, workspace_id, Lock::None).await?;
            let now_ms = self.now_ms();
            let (from_ms, to_ms, shown_to_ms) = match range {
                ReportRange::Time { from_ms, to_ms } => {
                    let to_ms = to_ms.unwrap_or(now_ms.saturating_add(1));
                    (from_ms.unwrap_or(0), to_ms, to_ms)
                }
                ReportRange::ContractPeriod(label) => match &workspace.overflow {
                    Some(pool) if pool.period == *label => (pool.period_started_at_ms, i64::MAX, now_ms),
                    _ => {
                        let (from_ms, to_ms) =
                            tx.closed_overflow_period(workspace_id, label).await?.ok_or_else(|| {
                                LedgerError::NotFound {
                                    field: "contract_period",
                                    what: "contract period",
                                    id: format!("{label} of {workspace_id}"),
                                }
                            })?;
                        (from_ms, to_ms, to_ms)
                    }
                },
            };
            let rows = tx.usage_totals(workspace_id, from_ms, to_ms).await?;
            Ok(usage_report(rows, from_ms, shown_to_ms)?)
        })
        .await
    }

    /// A page of a scope's journal, oldest first, after the entry `after`.
    pub async fn journal_page(
        &self,
        scope: &Tenant,
        filter: &JournalFilter,
        page_size: u32,
        after: i64,
    ) -> Result<Page<JournalRow>, LedgerError> {
        let limit = super::members::page_limit(page_size);
        self.retrying(|| async {
            let mut tx = self.store.begin().await?;
            existing_scope(&mut tx, scope).await?;
            let entries = tx.journal_entries(scope.id(), filter, after, limit + 1).await?;
            Ok(super::members::paginate(entries, limit, |entry| entry.entry_id.to_string()))
        })
        .await
    }

    /// Every entry of a scope's journal the filter selects, oldest first, read in pages of
    /// [`EXPORT_PAGE`] as the receiver takes them: memory stays flat however long the journal.
    /// A missing scope is the first (and only) item.
    pub fn export_journal(
        &self,
        scope: Tenant,
        filter: JournalFilter,
    ) -> mpsc::Receiver<Result<JournalRow, LedgerError>> {
        let (sender, receiver) = mpsc::channel(EXPORT_PAGE as usize);
        let ledger = self.clone();
        tokio::spawn(async move {
            let mut after = 0;
            loop {
                let page = ledger
                    .retrying(|| async {
                        let mut tx = ledger.store.begin().await?;
                        if after == 0 {
                            existing_scope(&mut tx, &scope).await?;
                        }
                        Ok(tx.journal_entries(scope.id(), &filter, after, EXPORT_PAGE).await?)
                    })
                    .await;
                let entries = match page {
                    Ok(entries) => entries,
                    Err(error) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                };
                let last_page = entries.len() < EXPORT_PAGE as usize;
                for entry in entries {
                    after = entry.entry_id;
                    if sender.send(Ok(entry)).await.is_err() {
                        return; // the client went away
                    }
                }
                if last_page {
                    return;
                }
            }
        });
        receiver
    }
}

/// NOT_FOUND unless the scope's workspace (or account) exists.
async fn existing_scope(tx: &mut impl StoreTx, scope: &Tenant) -> Result<(), LedgerError> {
    match scope {
        Tenant::Workspace(id) => drop(existing_workspace(tx, id, Lock::None).await?),
        Tenant::Account(id) => drop(existing_account(tx, "account_id", id, Lock::None).await?),
    }
    Ok(())
}

/// Folds (member, link) sums into members and totals.
fn usage_report(
    rows: Vec<crate::store::UsageRow>,
    from_ms: i64,
    to_ms: i64,
) -> Result<UsageReport, crate::store::StoreError> {
    let corrupt = |what: String| crate::store::StoreError::Corrupt(what);
    let mut report =
        UsageReport { members: Vec::new(), totals: Split::default(), units: OverflowUnits::default(), from_ms, to_ms };
    for row in rows {
        let account_id = AccountId::parse(row.member_account_id.clone())
            .map_err(|e| corrupt(format!("journal member_account_id: {e}")))?;
        let part = DrawBucket::from_stored(&row.part).ok_or_else(|| corrupt(format!("journal part: {}", row.part)))?;
        // Net consumption can only be negative if the journal is wrong; VerifyLedger says where.
        let credits = Credits::new(row.consumed_credits.max(0)).unwrap_or_default();
        if report.members.last().is_none_or(|member| member.account_id != account_id) {
            report.members.push(MemberUsage {
                account_id,
                consumed: Split::default(),
                units: OverflowUnits::default(),
            });
        }
        let member = report.members.last_mut().ok_or_else(|| corrupt("no member".into()))?;
        let part_split = Split::only(part, credits);
        let units = OverflowUnits { quota: row.overflow_units, overage: row.overage_units };
        let overflow = || corrupt("usage sums past i64".into());
        member.consumed = member.consumed.checked_add(part_split).ok_or_else(overflow)?;
        member.units = member.units.plus(units);
        report.totals = report.totals.checked_add(part_split).ok_or_else(overflow)?;
        report.units = report.units.plus(units);
    }
    Ok(report)
}
