//! `/projects/{project}/environments`: viewers read, editors write.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use switchyard_store::{EnvironmentInput, Role};

use super::etag::{IfMatch, created, deleted, listed, versioned};
use super::input::{ApiPath, Body, allow, body, check_key, check_name};
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/projects/{project}/environments", get(list).post(create))
        .route(
            "/projects/{project}/environments/{env}",
            get(read).patch(rename).delete(remove),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEnvironment {
    key: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameEnvironment {
    name: String,
}

async fn list(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(project): ApiPath<String>,
) -> ApiResult<Response> {
    allow(&p, Role::Viewer, &project)?;
    Ok(listed(&state.store.list_environments(&project).await?))
}

async fn create(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(project): ApiPath<String>,
    b: Body<CreateEnvironment>,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let input = body(b)?;
    check_key("key", &input.key)?;
    check_name("name", &input.name)?;
    let env = state
        .store
        .create_environment(
            &p.actor(),
            &project,
            EnvironmentInput {
                key: input.key,
                name: input.name,
            },
        )
        .await?;
    let location = format!("/api/v1/projects/{project}/environments/{}", env.key);
    Ok(created(&location, env.version, &env))
}

async fn read(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, env)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    allow(&p, Role::Viewer, &project)?;
    let env = state.store.get_environment(&project, &env).await?;
    Ok(versioned(StatusCode::OK, env.version, &env))
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
    let env = state
        .store
        .update_environment(&p.actor(), &project, &env, expected, &input.name)
        .await?;
    Ok(versioned(StatusCode::OK, env.version, &env))
}

async fn remove(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, env)): ApiPath<(String, String)>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let expected = if_match.version()?;
    state
        .store
        .delete_environment(&p.actor(), &project, &env, expected)
        .await?;
    // API keys bound to it went with it: forget cached ones at once.
    state.auth.clear();
    Ok(deleted())
}
