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
use axum::routing::put;
use serde::Deserialize;
use switchyard_core::model::{FlagType, Variation};
use switchyard_store::{FlagDefinition, FlagEnvironment, FlagInput, Role, Version};

use super::etag::{IfMatch, versioned};
use super::input::{ApiPath, Body, allow, body, check_key, check_len, check_name};
use super::resource::{ApiResource, InProject, collection, item, store_calls};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/projects/{project}/flags", collection::<Flags>())
        .route("/projects/{project}/flags/{flag}", item::<Flags>())
        .route(
            "/projects/{project}/flags/{flag}/environments/{env}",
            put(replace_settings).patch(switch),
        )
}

/// A flag as a client writes it. On create `key` is required; on replace it
/// may be repeated but not changed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagBody {
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

struct Flags;

impl ApiResource for Flags {
    type Scope = InProject;
    type Body = FlagBody;
    type Input = FlagInput;
    type Item = FlagDefinition;

    fn body_key(body: &FlagBody) -> Option<&str> {
        body.key.as_deref()
    }

    fn into_input(b: FlagBody, key: String) -> ApiResult<FlagInput> {
        check_key("key", &key)?;
        check_name("name", &b.name)?;
        check_len("description", &b.description, 10_000)?;
        if b.tags.len() > 50 {
            return Err(ApiError::invalid_field("tags", "at most 50 tags"));
        }
        for (i, tag) in b.tags.iter().enumerate() {
            check_name(&format!("tags[{i}]"), tag)?;
            check_len(&format!("tags[{i}]"), tag, 64)?;
        }
        if b.metadata.len() > 50 {
            return Err(ApiError::invalid_field("metadata", "at most 50 entries"));
        }
        for (name, value) in &b.metadata {
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
        if b.variations.is_empty() {
            return Err(ApiError::invalid_field(
                "variations",
                "a flag needs at least one variation",
            ));
        }
        for (i, v) in b.variations.iter().enumerate() {
            check_key(&format!("variations[{i}].key"), &v.key)?;
        }
        for env in b.environments.keys() {
            check_key("environments", env)?;
        }
        Ok(FlagInput {
            key,
            name: b.name,
            description: b.description,
            flag_type: b.flag_type,
            variations: b.variations,
            tags: b.tags,
            metadata: b.metadata,
            archived: b.archived,
            environments: b.environments,
        })
    }

    store_calls!(
        project,
        list_flags,
        get_flag,
        create_flag,
        update_flag,
        delete_flag
    );
}

/// A flag body's input, for a flag created along with something else (an
/// experiment's one-call create); errors name the field under `prefix`.
pub(super) fn flag_input(b: FlagBody, key: String, prefix: &str) -> ApiResult<FlagInput> {
    Flags::into_input(b, key).map_err(|e| match e {
        ApiError::BadRequest {
            code,
            message,
            field,
        } => ApiError::BadRequest {
            code,
            message,
            field: Some(match field {
                Some(f) => format!("{prefix}.{f}"),
                None => prefix.to_string(),
            }),
        },
        other => other,
    })
}

impl FlagBody {
    pub(super) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
    pub(super) fn names_environment(&self, env: &str) -> bool {
        self.environments.contains_key(env)
    }
}

/// The kill switch: only `enabled`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Switch {
    enabled: bool,
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
