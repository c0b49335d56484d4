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
            // Postgres: serialization_failure, deadlock_detected. SQLite: BUSY, LOCKED (and their
            // extended codes), which a busy timeout normally absorbs.
            Some("40001" | "40P01" | "5" | "6" | "261" | "262" | "517") => StoreError::Conflict(error),
            // connection_exception class, admin/crash shutdown, cannot_connect_now,
            // too_many_connections, query_canceled (statement timeout).
            Some(code) if code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "57014") => {
                StoreError::Unavailable(error)
            }
            _ => StoreError::Database(error),
        }
    }
}
