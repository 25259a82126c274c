//! What an evaluation returns beside its value.

use serde::Serialize;
use serde_json::Value;

pub use switchyard_core::Reason;

/// Why an evaluation served the caller's default instead of a flag's value.
///
/// The names follow OpenFeature's error codes, so the
/// [OpenFeature provider](crate::openfeature) maps them one to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// No configuration yet: the client has neither synced with the server
    /// nor been given a bootstrap copy.
    ProviderNotReady,
    /// The environment has no flag with this key.
    FlagNotFound,
    /// The flag's value is not of the type asked for (a string flag read
    /// with [`Client::bool_value`](crate::Client::bool_value), say).
    TypeMismatch,
    /// The flag buckets units by an attribute the context lacks (usually
    /// the targeting key), so it cannot place this context.
    TargetingKeyMissing,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ProviderNotReady => "PROVIDER_NOT_READY",
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value with the story of how it was chosen.
///
/// On an error, `value` is the default the caller passed, `reason` is
/// [`Reason::Error`] and `error` says why; the evaluation never fails
/// otherwise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluationDetails<T> {
    pub value: T,
    /// The key of the variation served; `None` on an error.
    pub variant: Option<String>,
    pub reason: Reason,
    pub error: Option<ErrorCode>,
    /// The index of the targeting rule that served, if one did.
    pub rule: Option<usize>,
    /// The configuration revision the evaluation used (`0` before any).
    pub revision: u64,
}

impl<T> EvaluationDetails<T> {
    pub(crate) fn error(value: T, error: ErrorCode, revision: u64) -> Self {
        EvaluationDetails {
            value,
            variant: None,
            reason: Reason::Error,
            error: Some(error),
            rule: None,
            revision,
        }
    }

    /// `true` when the value came from the flag, not from the default.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

/// One flag of [`Client::all_flags`](crate::Client::all_flags).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagDetails {
    pub key: String,
    /// `Value::Null` on an error.
    #[serde(flatten)]
    pub details: EvaluationDetails<Value>,
}
