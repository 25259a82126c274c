//! `/projects/{project}/segments`: reusable sets of units, in every
//! environment of the project. Viewers read, editors write.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use switchyard_core::model::SegmentRule;
use switchyard_store::{Role, SegmentInput};

use super::etag::{IfMatch, created, deleted, listed, versioned};
use super::input::{ApiPath, Body, allow, body, check_key, check_len, check_name, check_same_key};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/projects/{project}/segments", get(list).post(create))
        .route(
            "/projects/{project}/segments/{segment}",
            get(read).put(replace).delete(remove),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentBody {
    #[serde(default)]
    key: Option<String>,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    included: Vec<String>,
    #[serde(default)]
    excluded: Vec<String>,
    #[serde(default)]
    rules: Vec<SegmentRule>,
}

impl SegmentBody {
    fn into_input(self, key: String) -> ApiResult<SegmentInput> {
        check_key("key", &key)?;
        check_name("name", &self.name)?;
        check_len("description", &self.description, 10_000)?;
        for (field, units) in [("included", &self.included), ("excluded", &self.excluded)] {
            for (i, unit) in units.iter().enumerate() {
                if unit.is_empty() {
                    return Err(ApiError::invalid_field(
                        format!("{field}[{i}]"),
                        "a unit is a non-empty targeting key",
                    ));
                }
            }
        }
        Ok(SegmentInput {
            key,
            name: self.name,
            description: self.description,
            included: self.included,
            excluded: self.excluded,
            rules: self.rules,
        })
    }
}

async fn list(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(project): ApiPath<String>,
) -> ApiResult<Response> {
    allow(&p, Role::Viewer, &project)?;
    Ok(listed(&state.store.list_segments(&project).await?))
}

async fn create(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(project): ApiPath<String>,
    b: Body<SegmentBody>,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let mut input = body(b)?;
    let key = input
        .key
        .take()
        .ok_or_else(|| ApiError::invalid_field("key", "missing field `key`"))?;
    let input = input.into_input(key)?;
    let segment = state
        .store
        .create_segment(&p.actor(), &project, input)
        .await?;
    let location = format!("/api/v1/projects/{project}/segments/{}", segment.key);
    Ok(created(&location, segment.version, &segment))
}

async fn read(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, segment)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    allow(&p, Role::Viewer, &project)?;
    let segment = state.store.get_segment(&project, &segment).await?;
    Ok(versioned(StatusCode::OK, segment.version, &segment))
}

async fn replace(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, segment)): ApiPath<(String, String)>,
    if_match: IfMatch,
    b: Body<SegmentBody>,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let expected = if_match.version()?;
    let input = body(b)?;
    check_same_key(&segment, input.key.as_deref())?;
    let input = input.into_input(segment.clone())?;
    let segment = state
        .store
        .update_segment(&p.actor(), &project, &segment, expected, input)
        .await?;
    Ok(versioned(StatusCode::OK, segment.version, &segment))
}

async fn remove(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, segment)): ApiPath<(String, String)>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let expected = if_match.version()?;
    state
        .store
        .delete_segment(&p.actor(), &project, &segment, expected)
        .await?;
    Ok(deleted())
}
