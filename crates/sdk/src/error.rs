//! The SDK's errors. Evaluation never returns one (it serves the default
//! and says why in [`EvaluationDetails`](crate::EvaluationDetails)); these
//! come from building a client, waiting for it, and flushing events.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The builder was given something unusable.
    #[error("invalid SDK setting: {0}")]
    Config(String),
    /// A bootstrap or cached document could not be read, parsed or compiled.
    #[error("unusable configuration document from {source_name}: {message}")]
    Document {
        source_name: String,
        message: String,
    },
    /// The background thread could not be started.
    #[error("cannot start the SDK's background thread: {0}")]
    Thread(std::io::Error),
    /// `wait_until_ready` gave up; the client keeps trying in the
    /// background and evaluates from what it has meanwhile.
    #[error("not ready after {waited:?}: {status}")]
    NotReady { waited: Duration, status: String },
    /// The server refused the SDK key (revoked, deleted, or not a server
    /// key). The client stops syncing and keeps its last configuration.
    #[error("the server refused the SDK key: {0}")]
    Unauthorized(String),
    /// `flush` or `close` gave up with events still undelivered.
    #[error("{pending} events still undelivered after {waited:?}")]
    FlushTimeout { pending: usize, waited: Duration },
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
}
