//! Store errors, classified once from database error codes.

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is shutting down; safe to retry later.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A serialization failure or deadlock; the transaction may be retried at once.
    #[error("transaction conflict")]
    Conflict(#[source] sqlx::Error),
    /// A concurrent transaction took a key this one meant to write; rerun to see its result.
    #[error("raced: {0}")]
    Raced(&'static str),
    /// A row does not satisfy the domain's invariants.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// Any other database error: a programmer error.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether the whole transaction may be retried at once.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_) | StoreError::Raced(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        let code = match &error {
            sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => return StoreError::Unavailable(error),
            _ => return StoreError::Database(error),
        };
        match code.as_deref() {
            Some(codes::SERIALIZATION_FAILURE | codes::DEADLOCK_DETECTED) => StoreError::Conflict(error),
            Some(code) if codes::SQLITE_BUSY_OR_LOCKED.contains(&code) => StoreError::Conflict(error),
            Some(code) if code.starts_with(codes::CONNECTION_EXCEPTION_CLASS) || codes::UNAVAILABLE.contains(&code) => {
                StoreError::Unavailable(error)
            }
            _ => StoreError::Database(error),
        }
    }
}

/// The database error codes the store tells apart, named once.
mod codes {
    /// Postgres `serialization_failure`: retry the transaction.
    pub const SERIALIZATION_FAILURE: &str = "40001";
    /// Postgres `deadlock_detected`: retry the transaction.
    pub const DEADLOCK_DETECTED: &str = "40P01";
    /// SQLite `BUSY`, `LOCKED` and their extended codes (`BUSY_RECOVERY`, `BUSY_SNAPSHOT`,
    /// `LOCKED_SHAREDCACHE`), which the busy timeout normally absorbs: retry the transaction.
    pub const SQLITE_BUSY_OR_LOCKED: [&str; 5] = ["5", "6", "261", "262", "517"];
    /// Postgres class 08, `connection_exception`.
    pub const CONNECTION_EXCEPTION_CLASS: &str = "08";
    /// Postgres `admin_shutdown`, `crash_shutdown`, `cannot_connect_now`, `too_many_connections`
    /// and `query_canceled` (a statement timeout): the database cannot serve now.
    pub const UNAVAILABLE: [&str; 5] = ["57P01", "57P02", "57P03", "53300", "57014"];
}
