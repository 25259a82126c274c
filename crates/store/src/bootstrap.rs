//! First start: an empty store gets an organisation, a `default` project
//! with `development` and `production`, and an admin key whose secret is
//! returned once for the caller to print.

use crate::demo;
use crate::error::{Result, StoreError};
use crate::store::ConfigStore;
use crate::types::*;

/// The actor recorded in the audit log for what bootstrap creates.
pub const BOOTSTRAP_ACTOR: &str = "system:bootstrap";

/// What the first start created that a person must see.
#[derive(Debug, Clone)]
pub struct BootstrapOutput {
    /// The admin key's secret. Shown once; the store keeps only its hash.
    pub admin_key_secret: String,
}

/// Prepares an empty store, and with `demo` adds the `demo` project if it
/// is missing. Idempotent: a store that has projects gets no new default
/// project or key (returns `None`), so nodes starting at once are safe: the
/// one that loses the race to create `default` creates nothing.
pub async fn bootstrap(store: &dyn ConfigStore, demo: bool) -> Result<Option<BootstrapOutput>> {
    let mut output = None;
    if store.list_projects().await?.is_empty() {
        output = first_start(store).await?;
    }
    if demo {
        match demo::create(store).await {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(output)
}

async fn first_start(store: &dyn ConfigStore) -> Result<Option<BootstrapOutput>> {
    let project = ProjectInput {
        key: "default".into(),
        name: "Default".into(),
    };
    match store.create_project(BOOTSTRAP_ACTOR, project).await {
        Ok(_) => {}
        Err(StoreError::AlreadyExists { .. }) => return Ok(None),
        Err(e) => return Err(e),
    }
    if store.organisation().await?.is_none() {
        store
            .set_organisation(BOOTSTRAP_ACTOR, "Switchyard")
            .await?;
    }
    for (key, name) in [("development", "Development"), ("production", "Production")] {
        let env = EnvironmentInput {
            key: key.into(),
            name: name.into(),
        };
        store
            .create_environment(BOOTSTRAP_ACTOR, "default", env)
            .await?;
    }
    let key = store
        .create_api_key(
            BOOTSTRAP_ACTOR,
            ApiKeyInput {
                name: "bootstrap admin".into(),
                kind: ApiKeyKind::Admin(Role::Admin),
                project: None,
                environment: None,
            },
        )
        .await?;
    Ok(Some(BootstrapOutput {
        admin_key_secret: key.secret,
    }))
}
