//! `/projects/{project}/environments/{env}/holdouts`: units kept out of
//! the experiments that name the holdout. Viewers read, editors write.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use switchyard_core::model::{BasisPoints, default_bucket_by};
use switchyard_store::{HoldoutInput, Role};

use super::etag::{IfMatch, created, deleted, listed, versioned};
use super::input::{
    ApiPath, Body, allow, body, check_basis_points, check_key, check_name, check_same_key,
};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/projects/{project}/environments/{env}/holdouts",
            get(list).post(create),
        )
        .route(
            "/projects/{project}/environments/{env}/holdouts/{holdout}",
            get(read).put(replace).delete(remove),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldoutBody {
    #[serde(default)]
    key: Option<String>,
    size: BasisPoints,
    #[serde(default = "default_bucket_by")]
    bucket_by: String,
}

impl HoldoutBody {
    fn into_input(self, key: String) -> ApiResult<HoldoutInput> {
        check_key("key", &key)?;
        check_basis_points("size", self.size)?;
        check_name("bucket_by", &self.bucket_by)?;
        Ok(HoldoutInput {
            key,
            size: self.size,
            bucket_by: self.bucket_by,
        })
    }
}

async fn list(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, env)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    allow(&p, Role::Viewer, &project)?;
    Ok(listed(&state.store.list_holdouts(&project, &env).await?))
}

async fn create(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, env)): ApiPath<(String, String)>,
    b: Body<HoldoutBody>,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let mut input = body(b)?;
    let key = input
        .key
        .take()
        .ok_or_else(|| ApiError::invalid_field("key", "missing field `key`"))?;
    let input = input.into_input(key)?;
    let holdout = state
        .store
        .create_holdout(&p.actor(), &project, &env, input)
        .await?;
    let location = format!(
        "/api/v1/projects/{project}/environments/{env}/holdouts/{}",
        holdout.key
    );
    Ok(created(&location, holdout.version, &holdout))
}

async fn read(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, env, holdout)): ApiPath<(String, String, String)>,
) -> ApiResult<Response> {
    allow(&p, Role::Viewer, &project)?;
    let holdout = state.store.get_holdout(&project, &env, &holdout).await?;
    Ok(versioned(StatusCode::OK, holdout.version, &holdout))
}

async fn replace(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, env, holdout)): ApiPath<(String, String, String)>,
    if_match: IfMatch,
    b: Body<HoldoutBody>,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let expected = if_match.version()?;
    let input = body(b)?;
    check_same_key(&holdout, input.key.as_deref())?;
    let input = input.into_input(holdout.clone())?;
    let holdout = state
        .store
        .update_holdout(&p.actor(), &project, &env, &holdout, expected, input)
        .await?;
    Ok(versioned(StatusCode::OK, holdout.version, &holdout))
}

async fn remove(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, env, holdout)): ApiPath<(String, String, String)>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let expected = if_match.version()?;
    state
        .store
        .delete_holdout(&p.actor(), &project, &env, &holdout, expected)
        .await?;
    Ok(deleted())
}
