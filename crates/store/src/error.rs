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
    /// Other resources refer to it (`users`, e.g. `experiment
    /// "production/checkout-test"`): it cannot be deleted.
    #[error("{kind} {key:?} is in use by {}", users.join(", "))]
    InUse {
        kind: &'static str,
        key: String,
        users: Vec<String>,
    },
    /// The change is not allowed: an illegal status transition, an unknown
    /// environment, or a configuration the evaluator rejects (the message
    /// is the compiler's).
    #[error("{0}")]
    Invalid(String),
    /// The resource is not in a state that allows the change (an
    /// experiment step from the wrong status, an edit that would move
    /// units of a running experiment); the message says what would.
    #[error("{0}")]
    WrongState(String),
    /// One field of the input cannot be stored as it is (`field` is its
    /// path, e.g. `rules[0].name`).
    #[error("{message}")]
    InvalidField { field: String, message: String },
    /// A database failure. The message is for logs, not for clients.
    #[error("store backend error: {0}")]
    Backend(String),
    /// The database cannot be reached or cannot take the request now
    /// (connection refused or lost, pool exhausted, disk full, shutting
    /// down); retrying later may succeed. The message is for logs.
    #[error("store unavailable: {0}")]
    Unavailable(String),
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
        if is_transient(&e) {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Backend(e.to_string())
        }
    }
}

/// Whether an error says the database is out of reach or out of room for
/// now, rather than that the query or the data is wrong.
fn is_transient(e: &sqlx::Error) -> bool {
    use sqlx::Error as E;
    match e {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => true,
        E::Protocol(_) => true,
        E::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL SQLSTATE classes: 08 connection exception, 53
            // insufficient resources (disk full, out of memory, too many
            // connections), 57P0x shutdown, 40001/40P01 serialization
            // failure and deadlock (always five characters). SQLite result
            // codes (numbers below 10000): 5 busy, 6 locked, 10 I/O error,
            // 13 full; extended codes keep the primary code in the low byte.
            if code.len() == 5 {
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P0")
                    || code == "40001"
                    || code == "40P01"
            } else {
                code.parse::<u32>()
                    .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13))
            }
        }
        _ => false,
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
