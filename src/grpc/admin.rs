//! `AdminService`: accounts, workspaces, members and reports for admin tooling.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

use super::access::{authorized, caller_of};
use super::convert;
use super::status::{error_status, invalid_argument};
use crate::domain::Tenant;
use crate::ledger::{
    AddAccountCredits, AddMember, ConfigureOverflowPool, CreateAccount, CreateProfile, CreateWorkspace,
    FundWorkspacePools, Ledger, ProfileChange, RemoveMember, RenewAccount, SetAccountPlan, SetLowBalanceThresholds,
    SetMemberAllowance, SetMemberRole, SetPoolSize, TopUpWorkspace, UpdateProfile,
};
use crate::notify::{Events, StreamLimits, StreamsExhausted};
use crate::proto::admin_service_server::AdminService;
use crate::proto::*;
use crate::store::Store;
use tokio_stream::StreamExt as _;

/// A server stream of `T`.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The `AdminService` handlers.
pub struct AdminApi<S> {
    ledger: Ledger<S>,
    events: Events,
    streams: StreamLimits,
}

impl<S: Store> AdminApi<S> {
    /// Handlers over `ledger`, streaming notifications from `events` within `streams`.
    pub fn new(ledger: Ledger<S>, events: Events, streams: StreamLimits) -> AdminApi<S> {
        AdminApi { ledger, events, streams }
    }
}

#[tonic::async_trait]
impl<S: Store> AdminService for AdminApi<S> {
    async fn create_account(
        &self,
        request: Request<CreateAccountRequest>,
    ) -> Result<Response<CreateAccountResponse>, Status> {
        let request = authorized(request)?;
        let command = CreateAccount {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key)?,
            account_id: convert::account_id("account_id", request.account_id)?,
        };
        let view = self.ledger.create_account(command).await?;
        Ok(Response::new(CreateAccountResponse { account: Some(convert::account(&view)) }))
    }

    async fn get_account(&self, request: Request<GetAccountRequest>) -> Result<Response<GetAccountResponse>, Status> {
        let account_id = convert::account_id("account_id", authorized(request)?.account_id)?;
        let view = self.ledger.get_account(&account_id).await?;
        Ok(Response::new(GetAccountResponse { account: Some(convert::account(&view)) }))
    }

    async fn set_account_plan(
        &self,
        request: Request<SetAccountPlanRequest>,
    ) -> Result<Response<SetAccountPlanResponse>, Status> {
        let request = authorized(request)?;
        let command = SetAccountPlan {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key)?,
            account_id: convert::account_id("account_id", request.account_id)?,
            monthly_credits: convert::setting("monthly_credits", request.monthly_credits)?,
            billing_anchor: convert::billing_anchor("billing_anchor", request.billing_anchor)?,
        };
        let result = self.ledger.set_account_plan(command).await?;
        Ok(Response::new(SetAccountPlanResponse {
            account: Some(convert::account(&result.account)),
            granted_credits: result.granted.get(),
        }))
    }

    async fn add_account_credits(
        &self,
        request: Request<AddAccountCreditsRequest>,
    ) -> Result<Response<AddAccountCreditsResponse>, Status> {
        let request = authorized(request)?;
        let command = AddAccountCredits {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key)?,
            account_id: convert::account_id("account_id", request.account_id)?,
            amount_credits: convert::amount("amount_credits", request.amount_credits)?,
        };
        let view = self.ledger.add_account_credits(command).await?;
        Ok(Response::new(AddAccountCreditsResponse { account: Some(convert::account(&view)) }))
    }

    async fn create_workspace(
        &self,
        request: Request<CreateWorkspaceRequest>,
    ) -> Result<Response<CreateWorkspaceResponse>, Status> {
        let request = authorized(request)?;
        let command = CreateWorkspace {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key)?,
            workspace_id: convert::workspace_id("workspace_id", request.workspace_id)?,
            owner_account_id: convert::account_id("owner_account_id", request.owner_account_id)?,
        };
        let view = self.ledger.create_workspace(command).await?;
        Ok(Response::new(CreateWorkspaceResponse { workspace: Some(convert::workspace(&view)) }))
    }

    async fn get_workspace(
        &self,
        request: Request<GetWorkspaceRequest>,
    ) -> Result<Response<GetWorkspaceResponse>, Status> {
        let workspace_id = convert::workspace_id("workspace_id", authorized(request)?.workspace_id)?;
        let view = self.ledger.get_workspace(&workspace_id).await?;
        Ok(Response::new(GetWorkspaceResponse { workspace: Some(convert::workspace(&view)) }))
    }

    async fn set_pool_size(
        &self,
        request: Request<SetPoolSizeRequest>,
    ) -> Result<Response<SetPoolSizeResponse>, Status> {
        let request = authorized(request)?;
        let command = SetPoolSize {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key)?,
            workspace_id: convert::workspace_id("workspace_id", request.workspace_id)?,
            actor_account_id: convert::account_id("actor_account_id", request.actor_account_id)?,
            pool_size_credits: convert::setting("pool_size_credits", request.pool_size_credits)?,
        };
        let result = self.ledger.set_pool_size(command).await?;
        Ok(Response::new(SetPoolSizeResponse {
            workspace: Some(convert::workspace(&result.workspace)),
            funded_credits: result.change.funded.get(),
            funded_from: convert::account_draw(result.change.draw),
        }))
    }

    async fn top_up_workspace(
        &self,
        request: Request<TopUpWorkspaceRequest>,
    ) -> Result<Response<TopUpWorkspaceResponse>, Status> {
        let request = authorized(request)?;
        let command = TopUpWorkspace {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key)?,
            workspace_id: convert::workspace_id("workspace_id", request.workspace_id)?,
            actor_account_id: convert::account_id("actor_account_id", request.actor_account_id)?,
            amount_credits: convert::amount("amount_credits", request.amount_credits)?,
        };
        let result = self.ledger.top_up_workspace(command).await?;
        Ok(Response::new(TopUpWorkspaceResponse {
            workspace: Some(convert::workspace(&result.workspace)),
            funded_from: convert::account_draw(result.draw),
        }))
    }

    async fn set_low_balance_thresholds(
        &self,
        request: Request<SetLowBalanceThresholdsRequest>,
    ) -> Result<Response<SetLowBalanceThresholdsResponse>, Status> {
        let request = authorized(request)?;
        let command = SetLowBalanceThresholds {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key)?,
            workspace_id: convert::workspace_id("workspace_id", request.workspace_id)?,
            actor_account_id: convert::account_id("actor_account_id", request.actor_account_id)?,
            thresholds: convert::thresholds("thresholds", request.thresholds)?,
        };
        let view = self.ledger.set_low_balance_thresholds(command).await?;
        Ok(Response::new(SetLowBalanceThresholdsResponse { workspace: Some(convert::workspace(&view)) }))
    }

    async fn add_member(&self, request: Request<AddMemberRequest>) -> Result<Response<AddMemberResponse>, Status> {
        let request = authorized(request)?;
        let command = AddMember {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key)?,
            workspace_id: convert::workspace_id("workspace_id", request.workspace_id)?,
            actor_account_id: convert::account_id("actor_account_id", request.actor_account_id)?,
            account_id: convert::account_id("account_id", request.account_id)?,
            role: convert::assignable_role("role", request.role)?,
        };
        let view = self.ledger.add_member(command).await?;
        Ok(Response::new(AddMemberResponse { member: Some(convert::member(&view)) }))
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<RemoveMemberResponse>, Status> {
        let request = authorized(request)?;
        let command = RemoveMember {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key)?,
            workspace_id: convert::workspace_id("workspace_id", request.workspace_id)?,
            actor_account_id: convert::account_id("actor_account_id", request.actor_account_id)?,
            account_id: convert::account_id("account_id", request.account_id)?,
        };
        let result = self.ledger.remove_member(command).await?;
        Ok(Response::new(RemoveMemberResponse {
            member: Some(convert::member(&result.member)),
            released_reservations: result.released_reservations,
        }))
    }

    async fn set_member_role(
        &self,
        request: Request<SetMemberRoleRequest>,
    ) -> Result<Response<SetMemberRoleResponse>, Status> {
        let request = authorized(request)?;
        let command = SetMemberRole {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key)?,
            workspace_id: convert::workspace_id("workspace_id", request.workspace_id)?,
            actor_account_id: convert::account_id("actor_account_id", request.actor_account_id)?,
            account_id: convert::account_id("account_id", request.account_id)?,
            role: convert::assignable_role("role", request.role)?,
        };
        let view = self.ledger.set_member_role(command).await?;
        Ok(Response::new(SetMemberRoleResponse { member: Some(convert::member(&view)) }))
    }

    async fn set_member_allowance(
        &self,
        request: Request<SetMemberAllowanceRequest>,
    ) -> Result<Response<SetMemberAllowanceResponse>, Status> {
        let request = authorized(request)?;
        let command = SetMemberAllowance {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key)?,
            workspace_id: convert::workspace_id("workspace_id", request.workspace_id)?,
            actor_account_id: convert::account_id("actor_account_id", request.actor_account_id)?,
            account_id: convert::account_id("account_id", request.account_id)?,
            monthly_allowance_credits: convert::setting(
                "monthly_allowance_credits",
                request.monthly_allowance_credits,
            )?,
            top_up_allowance_credits: convert::setting("top_up_allowance_credits", request.top_up_allowance_credits)?,
        };
        let result = self.ledger.set_member_allowance(command).await?;
        Ok(Response::new(SetMemberAllowanceResponse {
            member: Some(convert::member(&result.member)),
            workspace: Some(convert::workspace(&result.workspace)),
        }))
    }

    async fn list_members(
        &self,
        request: Request<ListMembersRequest>,
    ) -> Result<Response<ListMembersResponse>, Status> {
        let request = authorized(request)?;
        let workspace_id = convert::workspace_id("workspace_id", request.workspace_id)?;
        let page_size = convert::page_size("page_size", request.page_size)?;
        let after = convert::account_page_token("page_token", request.page_token)?;
        let page = self.ledger.list_members(&workspace_id, page_size, after.as_ref()).await?;
        Ok(Response::new(ListMembersResponse {
            members: page.items.iter().map(convert::member).collect(),
            next_page_token: page.next_after.unwrap_or_default(),
        }))
    }

    async fn list_reservations(
        &self,
        request: Request<ListReservationsRequest>,
    ) -> Result<Response<ListReservationsResponse>, Status> {
        let request = authorized(request)?;
        let account_id = if request.account_id.is_empty() {
            None
        } else {
            Some(convert::account_id("account_id", request.account_id)?)
        };
        let scope = match (convert::optional_workspace_id("workspace_id", request.workspace_id)?, &account_id) {
            (Some(workspace_id), _) => Tenant::Workspace(workspace_id),
            (None, Some(account_id)) => Tenant::Account(account_id.clone()),
            (None, None) => {
                return Err(invalid_argument(
                    "workspace_id",
                    "set workspace_id, or account_id alone for personal holds",
                ));
            }
        };
        let page_size = convert::page_size("page_size", request.page_size)?;
        let after = convert::hold_cursor("page_token", request.page_token)?;
        let page = self.ledger.list_holds(&scope, account_id.as_ref(), page_size, after.as_ref()).await?;
        let now_ms = self.ledger.now_ms();
        Ok(Response::new(ListReservationsResponse {
            reservations: page.holds.iter().map(|hold| convert::reservation(hold, now_ms)).collect(),
            next_page_token: page.next.as_ref().map(convert::hold_page_token).unwrap_or_default(),
        }))
    }

    async fn renew_account(
        &self,
        request: Request<RenewAccountRequest>,
    ) -> Result<Response<RenewAccountResponse>, Status> {
        let request = authorized(request)?;
        let command = RenewAccount {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key)?,
            account_id: convert::account_id("account_id", request.account_id)?,
            period: convert::period("period", &request.period)?,
            only_if_due: false,
        };
        let renewed = self.ledger.renew_account(command).await?;
        let outcome = if renewed.renewal.succeeded { RenewalOutcome::Succeeded } else { RenewalOutcome::Failed };
        Ok(Response::new(RenewAccountResponse {
            account: Some(convert::account(&renewed.account)),
            outcome: outcome.into(),
            required_credits: renewed.renewal.required.get(),
            available_credits: renewed.renewal.available.get(),
            workspaces: renewed.workspaces.iter().map(convert::workspace).collect(),
        }))
    }

    async fn fund_workspace_pools(
        &self,
        request: Request<FundWorkspacePoolsRequest>,
    ) -> Result<Response<FundWorkspacePoolsResponse>, Status> {
        let request = authorized(request)?;
        let command = FundWorkspacePools {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key)?,
            account_id: convert::account_id("account_id", request.account_id)?,
        };
        let funded = self.ledger.fund_workspace_pools(command).await?;
        Ok(Response::new(FundWorkspacePoolsResponse {
            account: Some(convert::account(&funded.account)),
            workspaces: funded.workspaces.iter().map(convert::workspace).collect(),
            funded_credits: funded.funded.get(),
        }))
    }

    async fn create_profile(
        &self,
        request: Request<CreateProfileRequest>,
    ) -> Result<Response<CreateProfileResponse>, Status> {
        let request = authorized(request)?;
        let command = CreateProfile {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key)?,
            workspace_id: convert::workspace_id("workspace_id", request.workspace_id)?,
            actor_account_id: convert::account_id("actor_account_id", request.actor_account_id)?,
            profile_id: convert::profile_id("profile_id", request.profile_id)?,
            name: convert::profile_name("name", request.name)?,
            pool_access: request.pool_access,
            notify_on_assign: request.notify_on_assign,
            requires_consent: request.requires_consent,
        };
        let profile = self.ledger.create_profile(command).await?;
        Ok(Response::new(CreateProfileResponse { profile: Some(convert::profile(&profile)) }))
    }

    async fn update_profile(
        &self,
        request: Request<UpdateProfileRequest>,
    ) -> Result<Response<UpdateProfileResponse>, Status> {
        let request = authorized(request)?;
        let command = UpdateProfile {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key)?,
            workspace_id: convert::workspace_id("workspace_id", request.workspace_id)?,
            actor_account_id: convert::account_id("actor_account_id", request.actor_account_id)?,
            profile_id: convert::profile_id("profile_id", request.profile_id)?,
            name: request.name.map(|name| convert::profile_name("name", name)).transpose()?,
            pool_access: request.pool_access,
            notify_on_assign: request.notify_on_assign,
            requires_consent: request.requires_consent,
        };
        let profile = self.ledger.update_profile(command).await?;
        Ok(Response::new(UpdateProfileResponse { profile: Some(convert::profile(&profile)) }))
    }

    async fn delete_profile(
        &self,
        request: Request<DeleteProfileRequest>,
    ) -> Result<Response<DeleteProfileResponse>, Status> {
        let request = authorized(request)?;
        let accounts = None;
        let command = profile_change(
            request.idempotency_key,
            request.workspace_id,
            request.actor_account_id,
            request.profile_id,
            accounts,
        )?;
        let profile = self.ledger.delete_profile(command).await?;
        Ok(Response::new(DeleteProfileResponse { profile: Some(convert::profile(&profile)) }))
    }

    async fn assign_profile_members(
        &self,
        request: Request<AssignProfileMembersRequest>,
    ) -> Result<Response<AssignProfileMembersResponse>, Status> {
        let request = authorized(request)?;
        let accounts = Some(request.account_ids);
        let command = profile_change(
            request.idempotency_key,
            request.workspace_id,
            request.actor_account_id,
            request.profile_id,
            accounts,
        )?;
        let profile = self.ledger.assign_profile_members(command).await?;
        Ok(Response::new(AssignProfileMembersResponse { profile: Some(convert::profile(&profile)) }))
    }

    async fn unassign_profile_members(
        &self,
        request: Request<UnassignProfileMembersRequest>,
    ) -> Result<Response<UnassignProfileMembersResponse>, Status> {
        let request = authorized(request)?;
        let accounts = Some(request.account_ids);
        let command = profile_change(
            request.idempotency_key,
            request.workspace_id,
            request.actor_account_id,
            request.profile_id,
            accounts,
        )?;
        let profile = self.ledger.unassign_profile_members(command).await?;
        Ok(Response::new(UnassignProfileMembersResponse { profile: Some(convert::profile(&profile)) }))
    }

    async fn list_profiles(
        &self,
        request: Request<ListProfilesRequest>,
    ) -> Result<Response<ListProfilesResponse>, Status> {
        let request = authorized(request)?;
        let workspace_id = convert::workspace_id("workspace_id", request.workspace_id)?;
        let page_size = convert::page_size("page_size", request.page_size)?;
        let after = convert::profile_page_token("page_token", request.page_token)?;
        let page = self.ledger.list_profiles(&workspace_id, page_size, after.as_ref()).await?;
        Ok(Response::new(ListProfilesResponse {
            profiles: page.items.iter().map(convert::profile).collect(),
            next_page_token: page.next_after.unwrap_or_default(),
        }))
    }

    async fn configure_overflow_pool(
        &self,
        request: Request<ConfigureOverflowPoolRequest>,
    ) -> Result<Response<ConfigureOverflowPoolResponse>, Status> {
        let request = authorized(request)?;
        let command = ConfigureOverflowPool {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key.clone())?,
            workspace_id: convert::workspace_id("workspace_id", request.workspace_id.clone())?,
            actor_account_id: convert::account_id("actor_account_id", request.actor_account_id.clone())?,
            settings: convert::overflow_settings(&request)?,
        };
        let view = self.ledger.configure_overflow_pool(command).await?;
        Ok(Response::new(ConfigureOverflowPoolResponse { workspace: Some(convert::workspace(&view)) }))
    }

    async fn get_usage_report(
        &self,
        request: Request<GetUsageReportRequest>,
    ) -> Result<Response<GetUsageReportResponse>, Status> {
        let request = authorized(request)?;
        let workspace_id = convert::workspace_id("workspace_id", request.workspace_id)?;
        let range = convert::report_range(request.from_time, request.to_time, request.contract_period)?;
        let report = self.ledger.usage_report(&workspace_id, &range).await?;
        Ok(Response::new(convert::usage_report(&report)))
    }

    async fn list_journal_entries(
        &self,
        request: Request<ListJournalEntriesRequest>,
    ) -> Result<Response<ListJournalEntriesResponse>, Status> {
        let request = authorized(request)?;
        let scope = convert::journal_scope(request.workspace_id, request.account_id)?;
        let filter = convert::journal_filter(request.filter)?;
        let page_size = convert::page_size("page_size", request.page_size)?;
        let after = convert::journal_page_token("page_token", &request.page_token)?;
        let page = self.ledger.journal_page(&scope, &filter, page_size, after).await?;
        Ok(Response::new(ListJournalEntriesResponse {
            entries: page.items.iter().map(convert::journal_entry).collect(),
            next_page_token: page.next_after.unwrap_or_default(),
        }))
    }

    type ExportJournalStream = ResponseStream<ExportJournalResponse>;

    async fn export_journal(
        &self,
        request: Request<ExportJournalRequest>,
    ) -> Result<Response<Self::ExportJournalStream>, Status> {
        let request = authorized(request)?;
        let scope = convert::journal_scope(request.workspace_id, request.account_id)?;
        let filter = convert::journal_filter(request.filter)?;
        let entries = tokio_stream::wrappers::ReceiverStream::new(self.ledger.export_journal(scope, filter));
        let stream = entries.map(|entry| match entry {
            Ok(entry) => Ok(ExportJournalResponse { entry: Some(convert::journal_entry(&entry)) }),
            Err(error) => Err(Status::from(error)),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn verify_ledger(
        &self,
        request: Request<VerifyLedgerRequest>,
    ) -> Result<Response<VerifyLedgerResponse>, Status> {
        authorized(request)?;
        let check = self.ledger.verify_ledger().await?;
        Ok(Response::new(VerifyLedgerResponse {
            clean: check.discrepancies.is_empty(),
            discrepancies: check
                .discrepancies
                .into_iter()
                .map(|d| LedgerDiscrepancy {
                    bucket: d.bucket,
                    owner_id: d.owner_id,
                    recorded_credits: d.recorded,
                    journal_credits: d.journal,
                })
                .collect(),
            entries_checked: check.entries_checked,
            buckets_checked: check.buckets_checked,
        }))
    }

    type WatchNotificationsStream = ResponseStream<WatchNotificationsResponse>;

    async fn watch_notifications(
        &self,
        request: Request<WatchNotificationsRequest>,
    ) -> Result<Response<Self::WatchNotificationsStream>, Status> {
        let caller = caller_of(&request)?;
        let request = authorized(request)?;
        let filter = convert::notification_filter(request.account_id, request.workspace_id, &request.kinds)?;
        if request.after_sequence < 0 {
            return Err(invalid_argument("after_sequence", "must be 0 or a sequence this stream returned"));
        }
        let bounds = self.ledger.stream_bounds().await?;
        if request.after_sequence > bounds.last {
            return Err(invalid_argument(
                "after_sequence",
                format!("{} is beyond the last published sequence {}", request.after_sequence, bounds.last),
            ));
        }
        if bounds.lost_after(request.after_sequence) {
            return Err(super::status::out_of_range(
                "after_sequence",
                format!(
                    "events after {} were pruned (retention); the oldest kept is {}: resume from 0 or later",
                    request.after_sequence,
                    bounds.oldest_kept.map_or_else(|| "none".to_owned(), |oldest| oldest.to_string())
                ),
            ));
        }
        let permit = self.streams.admit(&caller.name).map_err(|exhausted| {
            let (scope, limit) = match exhausted {
                StreamsExhausted::Total(limit) => ("server", limit),
                StreamsExhausted::PerPrincipal(limit) => ("principal", limit),
            };
            error_status(
                Code::ResourceExhausted,
                "TOO_MANY_STREAMS",
                format!(
                    "at most {limit} notification streams per {scope} are open here; close one or use another replica"
                ),
                &[("limit", limit.to_string()), ("per", scope.to_owned())],
            )
        })?;
        let stream = self
            .events
            .subscribe(self.ledger.clone(), filter, caller.tenancy, request.after_sequence, permit)
            .map(|event| {
                event
                    .map(|event| WatchNotificationsResponse { notification: Some(convert::notification(&event)) })
                    .map_err(Status::from)
            });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The checked key, workspace, actor, profile and members (`None` for a deletion) of a profile
/// deletion or (un)assignment, checked in field order.
fn profile_change(
    idempotency_key: String,
    workspace_id: String,
    actor_account_id: String,
    profile_id: String,
    account_ids: Option<Vec<String>>,
) -> Result<ProfileChange, Status> {
    Ok(ProfileChange {
        idempotency_key: convert::idempotency_key("idempotency_key", idempotency_key)?,
        workspace_id: convert::workspace_id("workspace_id", workspace_id)?,
        actor_account_id: convert::account_id("actor_account_id", actor_account_id)?,
        profile_id: convert::profile_id("profile_id", profile_id)?,
        account_ids: account_ids.map(|ids| convert::account_ids("account_ids", ids)).transpose()?.unwrap_or_default(),
    })
}
