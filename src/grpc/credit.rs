//! `CreditService`: the hot path for generation backends.

use tonic::{Request, Response, Status};

use super::status::not_yet;
use crate::ledger::Ledger;
use crate::proto::credit_service_server::CreditService;
use crate::proto::*;
use crate::store::Store;

/// The `CreditService` handlers.
pub struct CreditApi<S> {
    #[allow(dead_code)] // the hot path lands in its own issue
    ledger: Ledger<S>,
}

impl<S: Store> CreditApi<S> {
    /// Handlers over `ledger`.
    pub fn new(ledger: Ledger<S>) -> CreditApi<S> {
        CreditApi { ledger }
    }
}

#[tonic::async_trait]
impl<S: Store> CreditService for CreditApi<S> {
    async fn consume(&self, _request: Request<ConsumeRequest>) -> Result<Response<ConsumeResponse>, Status> {
        Err(not_yet("Consume"))
    }

    async fn reserve(&self, _request: Request<ReserveRequest>) -> Result<Response<ReserveResponse>, Status> {
        Err(not_yet("Reserve"))
    }

    async fn commit(&self, _request: Request<CommitRequest>) -> Result<Response<CommitResponse>, Status> {
        Err(not_yet("Commit"))
    }

    async fn release(&self, _request: Request<ReleaseRequest>) -> Result<Response<ReleaseResponse>, Status> {
        Err(not_yet("Release"))
    }

    async fn refund(&self, _request: Request<RefundRequest>) -> Result<Response<RefundResponse>, Status> {
        Err(not_yet("Refund"))
    }

    async fn get_balance(&self, _request: Request<GetBalanceRequest>) -> Result<Response<GetBalanceResponse>, Status> {
        Err(not_yet("GetBalance"))
    }
}
