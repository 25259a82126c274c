//! Switchyard's evaluation engine: the flag and experiment model, its
//! compilation, and evaluation. Pure: no I/O, no async runtime, no clock.
//!
//! # Layout
//! - [`model`]: the configuration document (serde types), one environment.
//! - [`compile()`]: checks a document and builds an [`Evaluator`]; every
//!   configuration error is found here, naming the entity and field.
//! - [`Evaluator::evaluate`] / [`Evaluator::evaluate_all`]: evaluation for
//!   one [`Context`], returning borrowed [`Evaluation`]s.
//! - [`bucket`]: the frozen bucketing function (murmur3 x86_32, seed 0).
//! - [`limits`]: what one environment may cost to evaluate (prerequisite
//!   depth, work, regex memory); `compile` enforces them.
//! - [`lifecycle`]: which changes a running experiment may take without
//!   moving units between arms.
//! - [`exposure`]: what an exposure logger records and how it
//!   deduplicates, shared by the server and the SDK.
//! - [`metric`]: metric definitions (what an experiment measures) and the
//!   filter that matches tracked events' attributes.
//! - `condition`: compiled operators.
//!
//! The contract is `docs/evaluation.md`; the corpus `spec/eval/v1` proves it.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod bucket;
mod compile;
mod condition;
mod context;
mod eval;
pub mod exposure;
pub mod lifecycle;
pub mod limits;
pub mod metric;
pub mod model;

pub use compile::{CompileError, Evaluator, compile};
pub use condition::{parse_instant, parse_semver};
pub use context::{Context, ContextError, MAX_ATTRIBUTES};
pub use eval::{ErrorCode, Evaluation, Exposure, Reason};
pub use model::ConfigDocument;

impl Evaluator {
    /// Parses and compiles a JSON document.
    pub fn from_json(json: &str) -> Result<Evaluator, DocumentError> {
        let doc: ConfigDocument = serde_json::from_str(json).map_err(DocumentError::Parse)?;
        compile(&doc).map_err(DocumentError::Compile)
    }
}

/// A document that failed to parse or to compile.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("invalid configuration document: {0}")]
    Parse(serde_json::Error),
    #[error("invalid configuration: {0}")]
    Compile(CompileError),
}
