//! `/projects/{project}/environments/{env}/experiments`: experiments on
//! flags, from draft to running (`start`) to stopped (`stop`, optionally
//! shipping a winner). Only drafts can be edited. Viewers read, editors
//! write.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use switchyard_core::model::{
    BasisPoints, Condition, ExperimentStatus, LayerRange, WeightedVariation, default_bucket_by,
};
use switchyard_store::{ExperimentDefinition, ExperimentInput, Role, Version};

use super::etag::{IfMatch, created, deleted, listed, versioned};
use super::input::{
    ApiPath, Body, allow, body, check_basis_points, check_key, check_len, check_name,
    check_same_key,
};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

const BASE: &str = "/projects/{project}/environments/{env}/experiments";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/projects/{project}/environments/{env}/experiments",
            get(list).post(create),
        )
        .route(
            "/projects/{project}/environments/{env}/experiments/{experiment}",
            get(read).put(replace).delete(remove),
        )
        .route(
            "/projects/{project}/environments/{env}/experiments/{experiment}/start",
            post(start),
        )
        .route(
            "/projects/{project}/environments/{env}/experiments/{experiment}/stop",
            post(stop),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentBody {
    #[serde(default)]
    key: Option<String>,
    flag: String,
    name: String,
    #[serde(default)]
    hypothesis: String,
    variations: Vec<WeightedVariation>,
    #[serde(default = "full_coverage")]
    coverage: BasisPoints,
    #[serde(default = "default_bucket_by")]
    bucket_by: String,
    #[serde(default)]
    conditions: Vec<Condition>,
    #[serde(default)]
    layer: Option<LayerRange>,
    #[serde(default)]
    holdouts: Vec<String>,
    #[serde(default)]
    metrics: Vec<String>,
}

fn full_coverage() -> BasisPoints {
    10_000
}

impl ExperimentBody {
    fn into_input(self, key: String) -> ApiResult<ExperimentInput> {
        check_key("key", &key)?;
        check_key("flag", &self.flag)?;
        check_name("name", &self.name)?;
        check_len("hypothesis", &self.hypothesis, 10_000)?;
        check_basis_points("coverage", self.coverage)?;
        check_name("bucket_by", &self.bucket_by)?;
        if self.variations.is_empty() {
            return Err(ApiError::invalid_field(
                "variations",
                "an experiment needs at least one variation",
            ));
        }
        for (i, v) in self.variations.iter().enumerate() {
            check_basis_points(&format!("variations[{i}].weight"), v.weight)?;
        }
        if let Some(layer) = &self.layer {
            check_key("layer.key", &layer.key)?;
            check_basis_points("layer.start", layer.start)?;
            check_basis_points("layer.end", layer.end)?;
        }
        for (i, h) in self.holdouts.iter().enumerate() {
            check_key(&format!("holdouts[{i}]"), h)?;
        }
        for (i, m) in self.metrics.iter().enumerate() {
            check_name(&format!("metrics[{i}]"), m)?;
        }
        Ok(ExperimentInput {
            key,
            flag: self.flag,
            name: self.name,
            hypothesis: self.hypothesis,
            variations: self.variations,
            coverage: self.coverage,
            bucket_by: self.bucket_by,
            conditions: self.conditions,
            layer: self.layer,
            holdouts: self.holdouts,
            metrics: self.metrics,
        })
    }
}

/// The optional body of `stop`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StopBody {
    #[serde(default)]
    winner: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, env)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    allow(&p, Role::Viewer, &project)?;
    Ok(listed(&state.store.list_experiments(&project, &env).await?))
}

async fn create(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, env)): ApiPath<(String, String)>,
    b: Body<ExperimentBody>,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let mut input = body(b)?;
    let key = input
        .key
        .take()
        .ok_or_else(|| ApiError::invalid_field("key", "missing field `key`"))?;
    let input = input.into_input(key)?;
    let e = state
        .store
        .create_experiment(&p.actor(), &project, &env, input)
        .await?;
    let location = format!("/api/v1{}/{}", fill(&project, &env), e.key);
    Ok(created(&location, e.version, &e))
}

async fn read(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, env, key)): ApiPath<(String, String, String)>,
) -> ApiResult<Response> {
    allow(&p, Role::Viewer, &project)?;
    let e = state.store.get_experiment(&project, &env, &key).await?;
    Ok(versioned(StatusCode::OK, e.version, &e))
}

async fn replace(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, env, key)): ApiPath<(String, String, String)>,
    if_match: IfMatch,
    b: Body<ExperimentBody>,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let expected = if_match.version()?;
    let input = body(b)?;
    check_same_key(&key, input.key.as_deref())?;
    let input = input.into_input(key.clone())?;
    expect_status(
        &state,
        &project,
        &env,
        &key,
        expected,
        ExperimentStatus::Draft,
        "edited",
    )
    .await?;
    let e = state
        .store
        .update_experiment(&p.actor(), &project, &env, &key, expected, input)
        .await?;
    Ok(versioned(StatusCode::OK, e.version, &e))
}

async fn remove(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, env, key)): ApiPath<(String, String, String)>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let expected = if_match.version()?;
    state
        .store
        .delete_experiment(&p.actor(), &project, &env, &key, expected)
        .await?;
    Ok(deleted())
}

async fn start(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, env, key)): ApiPath<(String, String, String)>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let expected = if_match.version()?;
    expect_status(
        &state,
        &project,
        &env,
        &key,
        expected,
        ExperimentStatus::Draft,
        "started",
    )
    .await?;
    let e = state
        .store
        .start_experiment(&p.actor(), &project, &env, &key, expected)
        .await?;
    Ok(versioned(StatusCode::OK, e.version, &e))
}

async fn stop(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, env, key)): ApiPath<(String, String, String)>,
    if_match: IfMatch,
    raw: Bytes,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let expected = if_match.version()?;
    let StopBody { winner } = if raw.iter().all(u8::is_ascii_whitespace) {
        StopBody::default()
    } else {
        serde_json::from_slice(&raw).map_err(|e| {
            crate::extract::serde_error(
                &e,
                format!("the body is optional, else {{\"winner\": \"<variation>\"}}: {e}"),
            )
        })?
    };
    if let Some(w) = &winner {
        check_key("winner", w)?;
    }
    let current = expect_status(
        &state,
        &project,
        &env,
        &key,
        expected,
        ExperimentStatus::Running,
        "stopped",
    )
    .await?;
    if let Some(w) = &winner
        && !current.variations.iter().any(|v| &v.variation == w)
    {
        return Err(ApiError::invalid_field(
            "winner",
            format!("{w:?} is not one of the experiment's variations"),
        ));
    }
    let e = state
        .store
        .stop_experiment(&p.actor(), &project, &env, &key, expected, winner)
        .await?;
    Ok(versioned(StatusCode::OK, e.version, &e))
}

/// The experiment, if it is at version `expected` (else 412) and in
/// `status` (else 409: the transition is not allowed from where it is).
async fn expect_status(
    state: &AppState,
    project: &str,
    env: &str,
    key: &str,
    expected: Version,
    status: ExperimentStatus,
    verb: &str,
) -> ApiResult<ExperimentDefinition> {
    let e = state.store.get_experiment(project, env, key).await?;
    if e.version != expected {
        return Err(ApiError::PreconditionFailed(format!(
            "experiment {key:?} was changed concurrently: current version is {}",
            e.version
        )));
    }
    if e.status != status {
        return Err(ApiError::Conflict(format!(
            "experiment {key:?} is {}; only a {} experiment can be {verb}",
            status_name(e.status),
            status_name(status)
        )));
    }
    Ok(e)
}

fn status_name(s: ExperimentStatus) -> &'static str {
    s.as_str()
}

fn fill(project: &str, env: &str) -> String {
    BASE.replace("{project}", project).replace("{env}", env)
}
