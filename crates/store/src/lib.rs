//! Switchyard's config store: projects, environments, flags, segments,
//! metric definitions, experiments, holdouts, API keys and the audit log,
//! behind one trait, [`ConfigStore`], on SQLite (embedded default) or
//! PostgreSQL (scale-out).
//!
//! # Layout
//! - `types.rs`: the resources as read and written (serde), and their inputs.
//! - `store.rs`: the [`ConfigStore`] trait, the only thing the server uses.
//! - `error.rs`: [`StoreError`]; `Backend` messages are for logs only.
//! - `document.rs`: builds one environment's `ConfigDocument` and checks it
//!   with `switchyard_core::compile` (pure).
//! - `lifecycle.rs`: the experiment lifecycle's rules (which step from
//!   which status, which edits a running experiment takes); pure.
//! - `secret.rs`: API key secrets (CSPRNG, base62) and their SHA-256.
//! - `sql/`: [`SqlStore`], the one implementation on both databases through
//!   sqlx's `Any` driver; migrations under `migrations/{sqlite,postgres}`.
//!   `sql/resource.rs` is what every resource shares; each resource is one
//!   module there with only what is particular to it.
//! - `bootstrap.rs`, `demo.rs`: first start on an empty store, and `--demo`.
//!
//! Every write is one transaction holding the change, its audit entry and
//! the project's new revision; subscribers hear of it after commit.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod bootstrap;
mod demo;
mod document;
mod error;
mod lifecycle;
pub mod password;
mod secret;
mod sql;
mod store;
pub mod types;

use std::sync::Arc;

pub use bootstrap::{BootstrapOutput, bootstrap};
pub use error::{Result, StoreError};
pub use secret::{hash as hash_secret, hash_bytes, is_well_formed as is_well_formed_secret};
pub use sql::SqlStore;
pub use sql::cluster::{LeaseRound, PartitionLease, PartitionState, PartitionVersion};
pub use store::ConfigStore;
pub use types::*;

/// Opens the store the URL names, `sqlite://PATH` (or `sqlite::memory:`)
/// or `postgres://...` (`postgresql://` too), and applies its migrations.
pub async fn open(url: &str) -> Result<Arc<dyn ConfigStore>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqlStore::open_sqlite(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(SqlStore::open_postgres(url).await?))
    } else {
        Err(StoreError::Invalid(format!(
            "unsupported store URL {:?}: use sqlite://PATH or postgres://...",
            url.split(':').next().unwrap_or_default()
        )))
    }
}
