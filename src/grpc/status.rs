//! The only mapping from ledger errors to gRPC statuses. Every status carries a
//! `google.rpc.ErrorInfo` with a stable reason, so callers never parse message text.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::DomainError;
use crate::ledger::LedgerError;

/// The `ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "creditpool.v1";

/// A status with an `ErrorInfo` of `reason` and `metadata`.
pub(crate) fn error_status(code: Code, reason: &str, message: String, metadata: &[(&str, String)]) -> Status {
    let metadata: HashMap<String, String> = metadata.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    Status::with_error_details(code, message, ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata))
}

/// An INVALID_ARGUMENT naming `field`, with a `BadRequest` violation for it.
pub(super) fn invalid_argument(field: &str, description: impl std::fmt::Display) -> Status {
    let description = description.to_string();
    let mut details = ErrorDetails::with_bad_request_violation(field, description.clone());
    details.set_error_info("INVALID_ARGUMENT", ERROR_DOMAIN, HashMap::from([("field".to_owned(), field.to_owned())]));
    Status::with_error_details(Code::InvalidArgument, format!("{field}: {description}"), details)
}

/// An OUT_OF_RANGE naming `field`.
pub(super) fn out_of_range(field: &str, description: impl std::fmt::Display) -> Status {
    error_status(Code::OutOfRange, "CURSOR_PRUNED", format!("{field}: {description}"), &[("field", field.to_owned())])
}

impl From<LedgerError> for Status {
    fn from(error: LedgerError) -> Status {
        match error {
            LedgerError::Rule(rule) => rule_status(rule),
            LedgerError::NotFound { field, .. } => {
                error_status(Code::NotFound, "NOT_FOUND", error.to_string(), &[("field", field.to_owned())])
            }
            LedgerError::AlreadyExists { field, .. } => {
                error_status(Code::AlreadyExists, "ALREADY_EXISTS", error.to_string(), &[("field", field.to_owned())])
            }
            LedgerError::IdempotencyConflict { ref field, .. } => {
                let field = field.clone();
                error_status(
                    Code::AlreadyExists,
                    "IDEMPOTENCY_KEY_REUSED",
                    format!("idempotency_key: {error}"),
                    &[("differing_field", field)],
                )
            }
            LedgerError::Unavailable(ref source) => {
                tracing::warn!(error = %crate::error_chain(source), "database unavailable");
                error_status(
                    Code::Unavailable,
                    "DATABASE_UNAVAILABLE",
                    "database unavailable; safe to retry".to_owned(),
                    &[],
                )
            }
            LedgerError::Internal(ref source) => {
                tracing::error!(error = %crate::error_chain(source), "internal error");
                error_status(Code::Internal, "INTERNAL", "internal error".to_owned(), &[])
            }
        }
    }
}

fn rule_status(rule: DomainError) -> Status {
    let message = rule.to_string();
    match rule {
        DomainError::InsufficientCredits { requested, available } => error_status(
            Code::ResourceExhausted,
            "INSUFFICIENT_CREDITS",
            message,
            &[("requested_credits", requested.to_string()), ("available_credits", available.to_string())],
        ),
        DomainError::PoolSizesExceedRenewal { owned_total, renewal_capacity } => error_status(
            Code::FailedPrecondition,
            "POOL_SIZES_EXCEED_RENEWAL",
            format!("pool_size_credits: {message}"),
            &[
                ("owned_pool_size_credits", owned_total.to_string()),
                ("renewal_capacity_credits", renewal_capacity.to_string()),
            ],
        ),
        DomainError::AllowanceExceedsUnallocated { pool, requested, unallocated } => {
            let field = match pool {
                crate::domain::PoolKind::Monthly => "monthly_allowance_credits",
                crate::domain::PoolKind::TopUp => "top_up_allowance_credits",
            };
            error_status(
                Code::FailedPrecondition,
                "ALLOWANCE_EXCEEDS_UNALLOCATED",
                format!("{field}: {message}"),
                &[
                    ("field", field.to_owned()),
                    ("requested_credits", requested.to_string()),
                    ("unallocated_credits", unallocated.to_string()),
                ],
            )
        }
        DomainError::RoleHoldsNoAllowance { role } => error_status(
            Code::FailedPrecondition,
            "ROLE_HOLDS_NO_ALLOWANCE",
            format!("account_id: {message}"),
            &[("role", role.to_string())],
        ),
        DomainError::NotPermitted { .. } => {
            error_status(Code::PermissionDenied, "NOT_PERMITTED", format!("actor_account_id: {message}"), &[])
        }
        DomainError::OwnerIsPermanent => {
            error_status(Code::FailedPrecondition, "OWNER_IS_PERMANENT", format!("account_id: {message}"), &[])
        }
        DomainError::OwnerRoleNotAssignable => invalid_argument("role", message),
        DomainError::RoleCannotConsume { role } => error_status(
            Code::PermissionDenied,
            "ROLE_CANNOT_CONSUME",
            format!("account_id: {message}"),
            &[("role", role.to_string())],
        ),
        DomainError::HoldNotOpen { state } => error_status(
            Code::FailedPrecondition,
            "HOLD_NOT_OPEN",
            format!("reservation_key: {message}"),
            &[("state", state.to_string())],
        ),
        DomainError::HoldFromEarlierCycle { held } => error_status(
            Code::FailedPrecondition,
            "HOLD_FROM_EARLIER_PERIOD",
            format!("amount_credits: {message}"),
            &[("held_credits", held.to_string())],
        ),
        DomainError::TooManyOpenHolds { open } => error_status(
            Code::FailedPrecondition,
            "TOO_MANY_OPEN_HOLDS",
            format!("account_id: {message}"),
            &[("open_reservations", open.to_string())],
        ),
        DomainError::RefundExceedsConsumed { requested, refundable } => error_status(
            Code::FailedPrecondition,
            "REFUND_EXCEEDS_CONSUMED",
            format!("amount_credits: {message}"),
            &[("requested_credits", requested.to_string()), ("refundable_credits", refundable.to_string())],
        ),
        DomainError::RefundOfOpenHold => {
            error_status(Code::FailedPrecondition, "REFUND_OF_OPEN_HOLD", format!("consumption_key: {message}"), &[])
        }
        DomainError::RenewalNotDue { .. } => {
            error_status(Code::FailedPrecondition, "RENEWAL_NOT_DUE", format!("period: {message}"), &[])
        }
        DomainError::NoPlan => error_status(Code::FailedPrecondition, "NO_PLAN", format!("account_id: {message}"), &[]),
        DomainError::PeriodNotAfter { current, .. } => error_status(
            Code::FailedPrecondition,
            "PERIOD_NOT_AFTER",
            format!("period: {message}"),
            &[("current_period", current.to_string())],
        ),
        DomainError::OverflowNeedsConsent { credits, units } => error_status(
            Code::ResourceExhausted,
            "OVERFLOW_NEEDS_CONSENT",
            format!("allow_overflow: {message}"),
            &[("overflow_credits", credits.to_string()), ("overflow_units", units.to_string())],
        ),
        DomainError::BalanceOverflow => error_status(Code::FailedPrecondition, "BALANCE_OVERFLOW", message, &[]),
    }
}
