//! `/projects/{project}/environments`: viewers read, editors write. An
//! environment's only change is its name (`PATCH`); deleting one deletes
//! what is in it, API keys bound to it included.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use switchyard_store::{ConfigStore, Environment, EnvironmentInput, Role, Version};

use super::etag::{IfMatch, versioned};
use super::input::{ApiPath, Body, allow, body, check_key, check_name};
use super::resource::{self, ApiResource, InProject};
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/projects/{project}/environments",
            resource::collection::<Environments>(),
        )
        .route(
            "/projects/{project}/environments/{env}",
            get(resource::read::<Environments>)
                .patch(rename)
                .delete(resource::remove::<Environments>),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    key: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameEnvironment {
    name: String,
}

struct Environments;

impl ApiResource for Environments {
    type Scope = InProject;
    type Body = CreateEnvironment;
    type Input = EnvironmentInput;
    type Item = Environment;
    const DELETE_TAKES_KEYS: bool = true;

    fn body_key(body: &CreateEnvironment) -> Option<&str> {
        Some(&body.key)
    }

    fn into_input(b: CreateEnvironment, key: String) -> ApiResult<EnvironmentInput> {
        check_key("key", &key)?;
        check_name("name", &b.name)?;
        Ok(EnvironmentInput { key, name: b.name })
    }

    async fn list(store: &dyn ConfigStore, s: &InProject) -> ApiResult<Vec<Environment>> {
        Ok(store.list_environments(&s.project).await?)
    }
    async fn get(store: &dyn ConfigStore, s: &InProject, key: &str) -> ApiResult<Environment> {
        Ok(store.get_environment(&s.project, key).await?)
    }
    async fn create(
        store: &dyn ConfigStore,
        actor: &str,
        s: &InProject,
        input: EnvironmentInput,
    ) -> ApiResult<Environment> {
        Ok(store.create_environment(actor, &s.project, input).await?)
    }
    async fn replace(
        store: &dyn ConfigStore,
        actor: &str,
        s: &InProject,
        key: &str,
        expected: Version,
        input: EnvironmentInput,
    ) -> ApiResult<Environment> {
        Ok(store
            .update_environment(actor, &s.project, key, expected, &input.name)
            .await?)
    }
    async fn delete(
        store: &dyn ConfigStore,
        actor: &str,
        s: &InProject,
        key: &str,
        expected: Version,
    ) -> ApiResult<()> {
        Ok(store
            .delete_environment(actor, &s.project, key, expected)
            .await?)
    }
}

async fn rename(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, env)): ApiPath<(String, String)>,
    if_match: IfMatch,
    b: Body<RenameEnvironment>,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let expected = if_match.version()?;
    let input = body(b)?;
    check_name("name", &input.name)?;
    let input = EnvironmentInput {
        key: env.clone(),
        name: input.name,
    };
    let scope = InProject { project };
    let env =
        Environments::replace(&*state.store, &p.actor(), &scope, &env, expected, input).await?;
    Ok(versioned(StatusCode::OK, env.version, &env))
}
