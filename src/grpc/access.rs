//! What a decoded request touches, checked against its caller: tenancy (a confined principal
//! works only in its workspaces and on its accounts) and `acts_as` (a console identity is its
//! admin actor). The auth layer has already authenticated the caller and checked the scope;
//! role rules (M1) stay in the domain.

use tonic::{Code, Request, Status};

use super::status::error_status;
use crate::auth::{Audit, AuditEntry, Caller};
use crate::proto::*;

/// The ids a request names, for authorization and the audit line.
pub(super) trait Touches {
    /// The workspace it works in (empty: none, a personal-context or account call).
    fn workspace_id(&self) -> &str {
        ""
    }
    /// The account it concerns.
    fn account_id(&self) -> &str {
        ""
    }
    /// The admin actor it claims to act as (empty: none).
    fn actor(&self) -> &str {
        ""
    }
    /// Whether it is an admin mutation (and so is audited).
    fn mutates(&self) -> bool {
        false
    }
    /// Whether it reads across every tenant (refused to confined principals).
    fn spans_tenants(&self) -> bool {
        false
    }
}

macro_rules! touches {
    ($($request:ident { $($method:ident: $field:ident),* } $(mutates $mutates:literal)? $(spans $spans:literal)?;)*) => {
        $(impl Touches for $request {
            $(fn $method(&self) -> &str { &self.$field })*
            $(fn mutates(&self) -> bool { $mutates })?
            $(fn spans_tenants(&self) -> bool { $spans })?
        })*
    };
}

touches! {
    ConsumeRequest { workspace_id: workspace_id, account_id: account_id };
    ReserveRequest { workspace_id: workspace_id, account_id: account_id };
    CommitRequest { workspace_id: workspace_id, account_id: account_id };
    ReleaseRequest { workspace_id: workspace_id, account_id: account_id };
    RefundRequest { workspace_id: workspace_id, account_id: account_id };
    GetBalanceRequest { workspace_id: workspace_id, account_id: account_id };
    CreateAccountRequest { account_id: account_id } mutates true;
    GetAccountRequest { account_id: account_id };
    SetAccountPlanRequest { account_id: account_id } mutates true;
    AddAccountCreditsRequest { account_id: account_id } mutates true;
    CreateWorkspaceRequest { workspace_id: workspace_id, account_id: owner_account_id } mutates true;
    GetWorkspaceRequest { workspace_id: workspace_id };
    SetPoolSizeRequest { workspace_id: workspace_id, actor: actor_account_id } mutates true;
    TopUpWorkspaceRequest { workspace_id: workspace_id, actor: actor_account_id } mutates true;
    SetLowBalanceThresholdsRequest { workspace_id: workspace_id, actor: actor_account_id } mutates true;
    AddMemberRequest { workspace_id: workspace_id, account_id: account_id, actor: actor_account_id } mutates true;
    RemoveMemberRequest { workspace_id: workspace_id, account_id: account_id, actor: actor_account_id } mutates true;
    SetMemberRoleRequest { workspace_id: workspace_id, account_id: account_id, actor: actor_account_id } mutates true;
    SetMemberAllowanceRequest { workspace_id: workspace_id, account_id: account_id, actor: actor_account_id } mutates true;
    ListMembersRequest { workspace_id: workspace_id };
    ListReservationsRequest { workspace_id: workspace_id, account_id: account_id };
    RenewAccountRequest { account_id: account_id } mutates true;
    FundWorkspacePoolsRequest { account_id: account_id } mutates true;
    CreateProfileRequest { workspace_id: workspace_id, actor: actor_account_id } mutates true;
    UpdateProfileRequest { workspace_id: workspace_id, actor: actor_account_id } mutates true;
    DeleteProfileRequest { workspace_id: workspace_id, actor: actor_account_id } mutates true;
    AssignProfileMembersRequest { workspace_id: workspace_id, actor: actor_account_id } mutates true;
    UnassignProfileMembersRequest { workspace_id: workspace_id, actor: actor_account_id } mutates true;
    ListProfilesRequest { workspace_id: workspace_id };
    ConfigureOverflowPoolRequest { workspace_id: workspace_id, actor: actor_account_id } mutates true;
    GetUsageReportRequest { workspace_id: workspace_id };
    ListJournalEntriesRequest { workspace_id: workspace_id, account_id: account_id };
    ExportJournalRequest { workspace_id: workspace_id, account_id: account_id };
    VerifyLedgerRequest {} spans true;
    WatchNotificationsRequest { workspace_id: workspace_id, account_id: account_id };
}

fn denied(reason: &str, message: String, field: &str) -> Status {
    error_status(Code::PermissionDenied, reason, message, &[("field", field.to_owned())])
}

/// The caller of a request that went through the auth layer.
pub(super) fn caller_of<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::internal("no caller: the auth layer is not in front of this service"))
}

/// The decoded request, once its caller may touch what it names; records what a mutation
/// touches for the audit line.
pub(super) fn authorized<T: Touches>(request: Request<T>) -> Result<T, Status> {
    let caller = caller_of(&request)?;
    let audit = request.extensions().get::<Audit>().cloned();
    let request = request.into_inner();
    let tenancy = &caller.tenancy;
    let (workspace, account) = (request.workspace_id(), request.account_id());
    if request.spans_tenants() && tenancy.is_confined() {
        return Err(denied(
            "TENANT_DENIED",
            format!("principal {} is confined to its tenants; this call reads every tenant", caller.name),
            "",
        ));
    }
    if !workspace.is_empty() && !tenancy.allows_workspace(workspace) {
        return Err(denied(
            "TENANT_DENIED",
            format!("workspace_id: principal {} may not touch workspace {workspace}", caller.name),
            "workspace_id",
        ));
    }
    if workspace.is_empty() && !account.is_empty() && !tenancy.allows_account(account) {
        return Err(denied(
            "TENANT_DENIED",
            format!("account_id: principal {} may not touch account {account}", caller.name),
            "account_id",
        ));
    }
    if let Some(acts_as) = &caller.acts_as {
        let actor = request.actor();
        if !actor.is_empty() && actor != acts_as {
            return Err(denied(
                "ACTOR_MISMATCH",
                format!("actor_account_id: principal {} acts as {acts_as}, not {actor}", caller.name),
                "actor_account_id",
            ));
        }
    }
    if let (Some(audit), true) = (audit, request.mutates()) {
        audit.record(AuditEntry {
            actor: request.actor().to_owned(),
            workspace_id: workspace.to_owned(),
            account_id: account.to_owned(),
        });
    }
    Ok(request)
}
