//! Switchyard's Rust SDK: feature flags and experiments evaluated inside
//! your process.
//!
//! A [`Client`] downloads its environment's configuration with a server
//! SDK key, compiles it with the same engine the server uses, and keeps it
//! current from the server's change stream (falling back to polling with
//! `ETag` when the stream is down). Evaluation reads the compiled copy
//! through one atomic load: no lock, no I/O, no allocation for booleans
//! and numbers, and it keeps working when the server is unreachable.
//! Exposures of experiment flags and tracked events go to the server in
//! the background, in batches, retried without being counted twice.
//!
//! ```no_run
//! use std::time::Duration;
//! use switchyard_sdk::{Client, Context};
//!
//! # async fn run() -> Result<(), switchyard_sdk::Error> {
//! let client = Client::builder("http://127.0.0.1:8080", std::env::var("SWITCHYARD_KEY").unwrap())
//!     .build()?;
//! client.wait_until_ready(Duration::from_secs(5)).await?;
//!
//! let mut user = Context::with_key("user-42");
//! user.set("plan", "pro");
//! if client.bool_value("new-checkout", &user, false) {
//!     // ...
//! }
//! client.track("user-42", "purchase", Some(12.5), None);
//!
//! client.close().await; // sends what is queued
//! # Ok(()) }
//! ```
//!
//! - Typed reads: [`Client::bool_value`], [`Client::string_value`],
//!   [`Client::number_value`], [`Client::int_value`],
//!   [`Client::json_value`], each with a `*_details` variant that says
//!   which variation served and why ([`EvaluationDetails`]).
//! - [`Client::all_flags`] for every flag at once.
//! - Start without the server: [`ClientBuilder::bootstrap_file`],
//!   [`ClientBuilder::cache_file`], or [`Client::offline`] for tests.
//! - [`Client::status`] and [`Client::subscribe`]: ready, stale (serving
//!   an old copy while the server is away), or failed (key refused).
//! - With the `openfeature` feature (on by default), [`openfeature`] has a
//!   provider for the official OpenFeature SDK.
//!
//! The guide is `docs/sdk.md` in the repository.

mod backoff;
mod client;
mod details;
mod error;
mod events;
mod http;
#[cfg(feature = "openfeature")]
pub mod openfeature;
mod sse;
mod sync;

pub use client::{Client, ClientBuilder, Status, StatusReport};
pub use details::{ErrorCode, EvaluationDetails, FlagDetails, Reason};
pub use error::Error;
pub use events::EventStats;
pub use switchyard_core::Context;
