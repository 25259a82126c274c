//! `/projects/{project}/flags`: flags with their settings in every
//! environment. Viewers read, editors write. One environment's settings
//! are replaced with `PUT .../environments/{env}`; `PATCH` on the same path
//! takes only `{"enabled": bool}`, the kill switch. Both are changes of the
//! flag and take its version in `If-Match`.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, put};
use serde::Deserialize;
use switchyard_core::model::{FlagType, Variation};
use switchyard_store::{FlagDefinition, FlagEnvironment, FlagInput, Role, Version};

use super::etag::{IfMatch, created, deleted, listed, versioned};
use super::input::{ApiPath, Body, allow, body, check_key, check_len, check_name, check_same_key};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/projects/{project}/flags", get(list).post(create))
        .route(
            "/projects/{project}/flags/{flag}",
            get(read).put(replace).delete(remove),
        )
        .route(
            "/projects/{project}/flags/{flag}/environments/{env}",
            put(replace_settings).patch(switch),
        )
}

/// A flag as a client writes it. On create `key` is required; on replace it
/// may be repeated but not changed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlagBody {
    #[serde(default)]
    key: Option<String>,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(rename = "type")]
    flag_type: FlagType,
    variations: Vec<Variation>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    archived: bool,
    /// Environments named here get these settings; on create the others
    /// are off, on replace the others keep theirs.
    #[serde(default)]
    environments: BTreeMap<String, FlagEnvironment>,
}

impl FlagBody {
    fn into_input(self, key: String) -> ApiResult<FlagInput> {
        check_key("key", &key)?;
        check_name("name", &self.name)?;
        check_len("description", &self.description, 10_000)?;
        if self.tags.len() > 50 {
            return Err(ApiError::invalid_field("tags", "at most 50 tags"));
        }
        for (i, tag) in self.tags.iter().enumerate() {
            check_name(&format!("tags[{i}]"), tag)?;
            check_len(&format!("tags[{i}]"), tag, 64)?;
        }
        if self.metadata.len() > 50 {
            return Err(ApiError::invalid_field("metadata", "at most 50 entries"));
        }
        for (name, value) in &self.metadata {
            let field = format!("metadata.{name}");
            check_name(&field, name)?;
            check_len(&field, name, 64)?;
            match value {
                serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {}
                serde_json::Value::String(s) => check_len(&field, s, 1000)?,
                _ => {
                    return Err(ApiError::invalid_field(
                        &field,
                        format!("{field} must be a boolean, string or number"),
                    ));
                }
            }
        }
        if self.variations.is_empty() {
            return Err(ApiError::invalid_field(
                "variations",
                "a flag needs at least one variation",
            ));
        }
        for (i, v) in self.variations.iter().enumerate() {
            check_key(&format!("variations[{i}].key"), &v.key)?;
        }
        for env in self.environments.keys() {
            check_key("environments", env)?;
        }
        Ok(FlagInput {
            key,
            name: self.name,
            description: self.description,
            flag_type: self.flag_type,
            variations: self.variations,
            tags: self.tags,
            metadata: self.metadata,
            archived: self.archived,
            environments: self.environments,
        })
    }
}

/// The kill switch: only `enabled`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Switch {
    enabled: bool,
}

async fn list(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(project): ApiPath<String>,
) -> ApiResult<Response> {
    allow(&p, Role::Viewer, &project)?;
    Ok(listed(&state.store.list_flags(&project).await?))
}

async fn create(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(project): ApiPath<String>,
    b: Body<FlagBody>,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let mut input = body(b)?;
    let key = input
        .key
        .take()
        .ok_or_else(|| ApiError::invalid_field("key", "missing field `key`"))?;
    let input = input.into_input(key)?;
    let flag = state.store.create_flag(&p.actor(), &project, input).await?;
    let location = format!("/api/v1/projects/{project}/flags/{}", flag.key);
    Ok(created(&location, flag.version, &flag))
}

async fn read(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, flag)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    allow(&p, Role::Viewer, &project)?;
    let flag = state.store.get_flag(&project, &flag).await?;
    Ok(versioned(StatusCode::OK, flag.version, &flag))
}

async fn replace(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, flag)): ApiPath<(String, String)>,
    if_match: IfMatch,
    b: Body<FlagBody>,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let expected = if_match.version()?;
    let input = body(b)?;
    check_same_key(&flag, input.key.as_deref())?;
    let input = input.into_input(flag.clone())?;
    let flag = state
        .store
        .update_flag(&p.actor(), &project, &flag, expected, input)
        .await?;
    Ok(versioned(StatusCode::OK, flag.version, &flag))
}

async fn remove(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, flag)): ApiPath<(String, String)>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let expected = if_match.version()?;
    state
        .store
        .delete_flag(&p.actor(), &project, &flag, expected)
        .await?;
    Ok(deleted())
}

async fn replace_settings(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, flag, env)): ApiPath<(String, String, String)>,
    if_match: IfMatch,
    b: Body<FlagEnvironment>,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let expected = if_match.version()?;
    let settings = body(b)?;
    let flag = change_settings(&state, &p, &project, &flag, &env, expected, |_| settings).await?;
    Ok(versioned(StatusCode::OK, flag.version, &flag))
}

async fn switch(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, flag, env)): ApiPath<(String, String, String)>,
    if_match: IfMatch,
    b: Body<Switch>,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let expected = if_match.version()?;
    let Switch { enabled } = body(b)?;
    let flag = change_settings(&state, &p, &project, &flag, &env, expected, |s| {
        FlagEnvironment { enabled, ..s }
    })
    .await?;
    Ok(versioned(StatusCode::OK, flag.version, &flag))
}

/// Rewrites one environment's settings of a flag, as an update of the flag
/// at version `expected` (the store checks it, so a stale read here cannot
/// overwrite a newer change).
async fn change_settings(
    state: &AppState,
    p: &Principal,
    project: &str,
    flag: &str,
    env: &str,
    expected: Version,
    change: impl FnOnce(FlagEnvironment) -> FlagEnvironment,
) -> ApiResult<FlagDefinition> {
    state.store.get_environment(project, env).await?;
    let current = state.store.get_flag(project, flag).await?;
    let settings = change(current.settings_for(env));
    let input = FlagInput {
        key: current.key,
        name: current.name,
        description: current.description,
        flag_type: current.flag_type,
        variations: current.variations,
        tags: current.tags,
        metadata: current.metadata,
        archived: current.archived,
        environments: BTreeMap::from([(env.to_string(), settings)]),
    };
    Ok(state
        .store
        .update_flag(&p.actor(), project, flag, expected, input)
        .await?)
}
