//! `/projects/{project}/environments/{env}/experiments`: experiments on
//! flags, from draft to running (`start`) to stopped (`stop`, optionally
//! shipping a winner). Only drafts can be edited. Viewers read, editors
//! write.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;
use switchyard_core::model::{
    BasisPoints, Condition, ExperimentStatus, LayerRange, WeightedVariation, default_bucket_by,
};
use switchyard_store::{
    ConfigStore, ExperimentDefinition, ExperimentInput, MetricRef, Role, Version,
};

use super::etag::{IfMatch, versioned};
use super::input::{ApiPath, allow, check_basis_points, check_key, check_len, check_name};
use super::resource::{self, ApiResource, InEnvironment, store_calls};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/projects/{project}/environments/{env}/experiments",
            resource::collection::<Experiments>(),
        )
        .route(
            "/projects/{project}/environments/{env}/experiments/{experiment}",
            resource::item::<Experiments>(),
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
pub struct ExperimentBody {
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
    /// `"key"` (a goal) or `{"metric": "key", "role": "guardrail"}`.
    #[serde(default)]
    metrics: Vec<MetricRef>,
}

fn full_coverage() -> BasisPoints {
    10_000
}

struct Experiments;

impl ApiResource for Experiments {
    type Scope = InEnvironment;
    type Body = ExperimentBody;
    type Input = ExperimentInput;
    type Item = ExperimentDefinition;

    fn body_key(body: &ExperimentBody) -> Option<&str> {
        body.key.as_deref()
    }

    fn into_input(b: ExperimentBody, key: String) -> ApiResult<ExperimentInput> {
        check_key("key", &key)?;
        check_key("flag", &b.flag)?;
        check_name("name", &b.name)?;
        check_len("hypothesis", &b.hypothesis, 10_000)?;
        check_basis_points("coverage", b.coverage)?;
        check_name("bucket_by", &b.bucket_by)?;
        if b.variations.is_empty() {
            return Err(ApiError::invalid_field(
                "variations",
                "an experiment needs at least one variation",
            ));
        }
        for (i, v) in b.variations.iter().enumerate() {
            check_basis_points(&format!("variations[{i}].weight"), v.weight)?;
        }
        if let Some(layer) = &b.layer {
            check_key("layer.key", &layer.key)?;
            check_basis_points("layer.start", layer.start)?;
            check_basis_points("layer.end", layer.end)?;
        }
        for (i, h) in b.holdouts.iter().enumerate() {
            check_key(&format!("holdouts[{i}]"), h)?;
        }
        if b.metrics.len() > 50 {
            return Err(ApiError::invalid_field("metrics", "at most 50 metrics"));
        }
        for (i, m) in b.metrics.iter().enumerate() {
            check_key(&format!("metrics[{i}]"), &m.metric)?;
        }
        Ok(ExperimentInput {
            key,
            flag: b.flag,
            name: b.name,
            hypothesis: b.hypothesis,
            variations: b.variations,
            coverage: b.coverage,
            bucket_by: b.bucket_by,
            conditions: b.conditions,
            layer: b.layer,
            holdouts: b.holdouts,
            metrics: b.metrics,
        })
    }

    /// Only a draft can be edited (409 otherwise).
    async fn check_replace(
        store: &dyn ConfigStore,
        s: &InEnvironment,
        key: &str,
        expected: Version,
    ) -> ApiResult<()> {
        let edited = ExperimentStatus::Draft;
        expect_status(store, &s.project, &s.env, key, expected, edited, "edited").await?;
        Ok(())
    }

    store_calls!(
        environment,
        list_experiments,
        get_experiment,
        create_experiment,
        update_experiment,
        delete_experiment
    );
}

/// The optional body of `stop`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StopBody {
    #[serde(default)]
    winner: Option<String>,
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
        &*state.store,
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
        &*state.store,
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
    store: &dyn ConfigStore,
    project: &str,
    env: &str,
    key: &str,
    expected: Version,
    status: ExperimentStatus,
    verb: &str,
) -> ApiResult<ExperimentDefinition> {
    let e = store.get_experiment(project, env, key).await?;
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
