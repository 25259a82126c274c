//! The store's one error type.

use crate::types::Version;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {key:?} not found")]
    NotFound { kind: &'static str, key: String },
    /// The caller's expected version is stale: someone else changed the
    /// resource since it was read.
    #[error("{kind} {key:?} was changed concurrently: current version is {current}")]
    Conflict {
        kind: &'static str,
        key: String,
        current: Version,
    },
    #[error("{kind} {key:?} already exists")]
    AlreadyExists { kind: &'static str, key: String },
    /// The change is not allowed: an illegal status transition, an unknown
    /// environment, or a configuration the evaluator rejects (the message
    /// is the compiler's).
    #[error("{0}")]
    Invalid(String),
    /// A database failure. The message is for logs, not for clients.
    #[error("store backend error: {0}")]
    Backend(String),
}

impl StoreError {
    pub(crate) fn not_found(kind: &'static str, key: impl Into<String>) -> StoreError {
        StoreError::NotFound {
            kind,
            key: key.into(),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Backend(format!("migration failed: {e}"))
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Backend(format!("stored JSON is unreadable: {e}"))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
