//! `/projects`: list, create (admin, organisation-wide key), read, rename,
//! delete (admin of the project).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use switchyard_store::{ProjectInput, Role};

use super::etag::{IfMatch, created, deleted, listed, versioned};
use super::input::{
    ApiPath, Body, allow, allow_any_project, allow_organisation, body, check_key, check_name, sees,
};
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/projects", get(list).post(create))
        .route(
            "/projects/{project}",
            get(read).patch(rename).delete(remove),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProject {
    key: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameProject {
    name: String,
}

async fn list(State(state): State<AppState>, p: Principal) -> ApiResult<Response> {
    allow_any_project(&p, Role::Viewer)?;
    let mut projects = state.store.list_projects().await?;
    projects.retain(|x| sees(&p, Some(&x.key)));
    Ok(listed(&projects))
}

async fn create(
    State(state): State<AppState>,
    p: Principal,
    b: Body<CreateProject>,
) -> ApiResult<Response> {
    allow_organisation(&p, Role::Admin)?;
    let input = body(b)?;
    check_key("key", &input.key)?;
    check_name("name", &input.name)?;
    let project = state
        .store
        .create_project(
            &p.actor(),
            ProjectInput {
                key: input.key,
                name: input.name,
            },
        )
        .await?;
    let location = format!("/api/v1/projects/{}", project.key);
    Ok(created(&location, project.version, &project))
}

async fn read(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(project): ApiPath<String>,
) -> ApiResult<Response> {
    allow(&p, Role::Viewer, &project)?;
    let project = state.store.get_project(&project).await?;
    Ok(versioned(StatusCode::OK, project.version, &project))
}

async fn rename(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(project): ApiPath<String>,
    if_match: IfMatch,
    b: Body<RenameProject>,
) -> ApiResult<Response> {
    allow(&p, Role::Admin, &project)?;
    let expected = if_match.version()?;
    let input = body(b)?;
    check_name("name", &input.name)?;
    let project = state
        .store
        .update_project(&p.actor(), &project, expected, &input.name)
        .await?;
    Ok(versioned(StatusCode::OK, project.version, &project))
}

async fn remove(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(project): ApiPath<String>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    allow(&p, Role::Admin, &project)?;
    let expected = if_match.version()?;
    state
        .store
        .delete_project(&p.actor(), &project, expected)
        .await?;
    // API keys bound to it went with it: forget cached ones at once.
    state.auth.clear();
    Ok(deleted())
}
