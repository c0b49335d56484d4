//! Ledger errors: what a use case reports to the gRPC boundary.

use std::sync::Arc;

use crate::domain::DomainError;
use crate::store::StoreError;

/// A use case failed; its transaction was rolled back and nothing changed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// A rule refused the change.
    #[error(transparent)]
    Rule(#[from] DomainError),
    /// Something named by the request does not exist.
    #[error("{field}: {what} {id} not found")]
    NotFound {
        /// The request field that named it.
        field: &'static str,
        /// What kind of thing.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The id to create is taken.
    #[error("{field}: {what} {id} already exists")]
    AlreadyExists {
        /// The request field that named it.
        field: &'static str,
        /// What kind of thing.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The idempotency key was used for a different request.
    #[error("idempotency key {key} was already used for a different request ({field} differs)")]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The first field that differs.
        field: String,
    },
    /// The database is unreachable, or conflicts outlasted the retries; safe to retry.
    #[error("database unavailable")]
    Unavailable(#[source] Arc<StoreError>),
    /// A programmer error or corrupt data.
    #[error("internal error")]
    Internal(#[source] Arc<StoreError>),
}

impl LedgerError {
    /// Whether the script may be rerun at once.
    pub fn is_conflict(&self) -> bool {
        matches!(self, LedgerError::Unavailable(error) if error.is_conflict())
    }

    /// Whether the database failed (rather than a rule or a missing row refusing the call): the
    /// transaction it happened in cannot go on.
    pub fn is_database(&self) -> bool {
        matches!(self, LedgerError::Unavailable(_) | LedgerError::Internal(_))
    }
}

impl From<StoreError> for LedgerError {
    fn from(error: StoreError) -> LedgerError {
        match error {
            StoreError::Unavailable(_) | StoreError::Conflict(_) | StoreError::Raced(_) => {
                LedgerError::Unavailable(Arc::new(error))
            }
            StoreError::Corrupt(_) | StoreError::Database(_) | StoreError::Migrate(_) => {
                LedgerError::Internal(Arc::new(error))
            }
        }
    }
}

impl LedgerError {
    /// An internal error for a broken invariant of this service (never the caller's doing).
    pub fn internal(what: impl Into<String>) -> LedgerError {
        LedgerError::Internal(Arc::new(StoreError::Corrupt(what.into())))
    }
}
