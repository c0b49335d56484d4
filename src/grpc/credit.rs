//! `CreditService`: the hot path for generation backends.

use tonic::{Request, Response, Status};

use super::access::authorized;
use super::convert;
use super::status::invalid_argument;
use crate::ledger::{Commit, Consume, Ledger, Refund, Release, Reserve};
use crate::proto::credit_service_server::CreditService;
use crate::proto::*;
use crate::store::Store;

/// The `CreditService` handlers.
pub struct CreditApi<S> {
    ledger: Ledger<S>,
}

impl<S: Store> CreditApi<S> {
    /// Handlers over `ledger`.
    pub fn new(ledger: Ledger<S>) -> CreditApi<S> {
        CreditApi { ledger }
    }

    /// 0 means the default TTL; anything else must be within the configured maximum.
    fn ttl_seconds(&self, value: u32) -> Result<u32, Status> {
        let settings = self.ledger.settings();
        match value {
            0 => Ok(settings.default_hold_ttl_seconds),
            ttl if ttl <= settings.max_hold_ttl_seconds => Ok(ttl),
            ttl => Err(invalid_argument(
                "ttl_seconds",
                format!(
                    "must be 1..={} (or 0 for the default {}), got {ttl}",
                    settings.max_hold_ttl_seconds, settings.default_hold_ttl_seconds
                ),
            )),
        }
    }
}

#[tonic::async_trait]
impl<S: Store> CreditService for CreditApi<S> {
    async fn consume(&self, request: Request<ConsumeRequest>) -> Result<Response<ConsumeResponse>, Status> {
        let request = authorized(request)?;
        let command = Consume {
            idempotency_key: convert::charge_key("idempotency_key", request.idempotency_key)?,
            account_id: convert::account_id("account_id", request.account_id)?,
            workspace_id: convert::optional_workspace_id("workspace_id", request.workspace_id)?,
            amount_credits: convert::amount("amount_credits", request.amount_credits)?,
            allow_overflow: request.allow_overflow,
        };
        let charge = self.ledger.consume(command).await?;
        Ok(Response::new(ConsumeResponse { consumption: Some(convert::consumption(&charge)) }))
    }

    async fn reserve(&self, request: Request<ReserveRequest>) -> Result<Response<ReserveResponse>, Status> {
        let request = authorized(request)?;
        let command = Reserve {
            reservation_key: convert::charge_key("reservation_key", request.reservation_key)?,
            account_id: convert::account_id("account_id", request.account_id)?,
            workspace_id: convert::optional_workspace_id("workspace_id", request.workspace_id)?,
            amount_credits: convert::amount("amount_credits", request.amount_credits)?,
            ttl_seconds: self.ttl_seconds(request.ttl_seconds)?,
            allow_overflow: request.allow_overflow,
        };
        let charge = self.ledger.reserve(command).await?;
        Ok(Response::new(ReserveResponse { reservation: Some(convert::reservation(&charge, self.ledger.now_ms())) }))
    }

    async fn commit(&self, request: Request<CommitRequest>) -> Result<Response<CommitResponse>, Status> {
        let request = authorized(request)?;
        let command = Commit {
            reservation_key: convert::charge_key("reservation_key", request.reservation_key)?,
            account_id: convert::account_id("account_id", request.account_id)?,
            workspace_id: convert::optional_workspace_id("workspace_id", request.workspace_id)?,
            amount_credits: convert::amount("amount_credits", request.amount_credits)?,
            allow_overflow: request.allow_overflow,
        };
        let outcome = self.ledger.commit(command).await?;
        Ok(Response::new(CommitResponse {
            consumption: Some(convert::consumption(&outcome.charge)),
            returned: convert::returned(&outcome.charge.scope, outcome.given_back),
            forfeited_credits: outcome.given_back.forfeited.get(),
        }))
    }

    async fn release(&self, request: Request<ReleaseRequest>) -> Result<Response<ReleaseResponse>, Status> {
        let request = authorized(request)?;
        let command = Release {
            reservation_key: convert::charge_key("reservation_key", request.reservation_key)?,
            account_id: convert::account_id("account_id", request.account_id)?,
            workspace_id: convert::optional_workspace_id("workspace_id", request.workspace_id)?,
        };
        let outcome = self.ledger.release(command).await?;
        Ok(Response::new(ReleaseResponse {
            reservation: Some(convert::reservation(&outcome.charge, self.ledger.now_ms())),
            returned: convert::returned(&outcome.charge.scope, outcome.given_back),
            forfeited_credits: outcome.given_back.forfeited.get(),
        }))
    }

    async fn refund(&self, request: Request<RefundRequest>) -> Result<Response<RefundResponse>, Status> {
        let request = authorized(request)?;
        let command = Refund {
            idempotency_key: convert::idempotency_key("idempotency_key", request.idempotency_key)?,
            account_id: convert::account_id("account_id", request.account_id)?,
            workspace_id: convert::optional_workspace_id("workspace_id", request.workspace_id)?,
            consumption_key: convert::charge_key("consumption_key", request.consumption_key)?,
            amount_credits: request
                .amount_credits
                .map(|amount| convert::amount("amount_credits", amount))
                .transpose()?,
        };
        let outcome = self.ledger.refund(command).await?;
        Ok(Response::new(RefundResponse {
            returned: convert::returned(&outcome.charge.scope, outcome.given_back),
            forfeited_credits: outcome.given_back.forfeited.get(),
            consumption: Some(convert::consumption(&outcome.charge)),
        }))
    }

    async fn get_balance(&self, request: Request<GetBalanceRequest>) -> Result<Response<GetBalanceResponse>, Status> {
        let request = authorized(request)?;
        let account_id = convert::account_id("account_id", request.account_id)?;
        let workspace_id = convert::optional_workspace_id("workspace_id", request.workspace_id)?;
        let balance = self.ledger.balance(&account_id, workspace_id.as_ref()).await?;
        Ok(Response::new(convert::balance(&account_id, &balance)))
    }
}
