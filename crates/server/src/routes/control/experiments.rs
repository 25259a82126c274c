//! `/projects/{project}/environments/{env}/experiments`: experiments on
//! flags and their lifecycle (`docs/experiments.md`): created as drafts or
//! running (`"start": true`, with their flag when `flag` is an object),
//! started, paused, resumed, stopped, shipped and restarted as new phases.
//! A running experiment takes edits that move no assigned unit (a ramp of
//! coverage, targeting); the store refuses the others with a 409. Viewers
//! read, editors write.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use switchyard_core::model::{
    BasisPoints, Condition, LayerRange, WeightedVariation, default_bucket_by,
};
use switchyard_store::{
    ExperimentDefinition, ExperimentInput, ExperimentStep, GuardrailPolicy, MetricRef,
    NewExperiment, RestartInput, Role,
};

use super::etag::{IfMatch, created, versioned};
use super::flags::{FlagBody, flag_input};
use super::input::{
    ApiPath, Body, allow, body, check_basis_points, check_key, check_len, check_name,
};
use super::resource::{self, ApiResource, InEnvironment, store_calls};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/projects/{project}/environments/{env}/experiments",
            get(resource::list::<Experiments>).post(create),
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
        .route(
            "/projects/{project}/environments/{env}/experiments/{experiment}/pause",
            post(pause),
        )
        .route(
            "/projects/{project}/environments/{env}/experiments/{experiment}/resume",
            post(resume),
        )
        .route(
            "/projects/{project}/environments/{env}/experiments/{experiment}/ship",
            post(ship),
        )
        .route(
            "/projects/{project}/environments/{env}/experiments/{experiment}/restart",
            post(restart),
        )
}

/// An experiment as a client writes it. `flag` is the key of an existing
/// flag; on create it may instead be a flag object (created with the
/// experiment), and `start` may ask for it running.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentBody {
    #[serde(default)]
    key: Option<String>,
    flag: Value,
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
    #[serde(default)]
    breakdown_by: Option<String>,
    /// `{"auto_stop": true}`: stop and serve the baseline on an alert.
    #[serde(default)]
    guardrails: GuardrailPolicy,
    #[serde(default)]
    start: Option<bool>,
}

fn full_coverage() -> BasisPoints {
    10_000
}

impl ExperimentBody {
    /// The input, with `flag` as the flag key.
    fn input(self, key: String, flag: String) -> ApiResult<ExperimentInput> {
        check_key("key", &key)?;
        check_key("flag", &flag)?;
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
        if self.metrics.len() > 50 {
            return Err(ApiError::invalid_field("metrics", "at most 50 metrics"));
        }
        for (i, m) in self.metrics.iter().enumerate() {
            check_key(&format!("metrics[{i}]"), &m.metric)?;
        }
        if let Some(b) = &self.breakdown_by {
            check_name("breakdown_by", b)?;
            check_len("breakdown_by", b, 256)?;
        }
        Ok(ExperimentInput {
            key,
            flag,
            name: self.name,
            hypothesis: self.hypothesis,
            variations: self.variations,
            coverage: self.coverage,
            bucket_by: self.bucket_by,
            conditions: self.conditions,
            layer: self.layer,
            holdouts: self.holdouts,
            metrics: self.metrics,
            breakdown_by: self.breakdown_by,
            guardrails: self.guardrails,
        })
    }
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

    /// A replace: `flag` is a key, and `start` has no place.
    fn into_input(b: ExperimentBody, key: String) -> ApiResult<ExperimentInput> {
        if b.start.is_some() {
            return Err(ApiError::invalid_field(
                "start",
                "`start` is only for creation; start a draft with POST .../start",
            ));
        }
        let flag = match &b.flag {
            Value::String(f) => f.clone(),
            _ => {
                return Err(ApiError::invalid_field(
                    "flag",
                    "`flag` is the key of the experiment's flag (a new flag is created only \
                     with the experiment)",
                ));
            }
        };
        b.input(key, flag)
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

/// `POST .../experiments`: a draft, or (`"start": true`) a running
/// experiment; with `flag` as an object, its flag too. One store write.
async fn create(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    p: Principal,
    ApiPath((project, env)): ApiPath<(String, String)>,
    b: Body<ExperimentBody>,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let mut b = body(b)?;
    let key = b
        .key
        .take()
        .ok_or_else(|| ApiError::invalid_field("key", "missing field `key`"))?;
    let start = b.start.take().unwrap_or(false);
    let (flag_key, new_flag) = match std::mem::take(&mut b.flag) {
        Value::String(f) => (f, None),
        v @ Value::Object(_) => {
            let fb: FlagBody = serde_json::from_value(v)
                .map_err(|e| crate::extract::serde_error(&e, format!("flag: {e}")))?;
            let flag_key = fb
                .key()
                .ok_or_else(|| ApiError::invalid_field("flag.key", "missing field `key`"))?
                .to_string();
            if fb.names_environment(&env) {
                return Err(ApiError::invalid_field(
                    format!("flag.environments.{env}"),
                    "the flag's settings in the experiment's environment are made by the \
                     create: on, its fallthrough serving the experiment",
                ));
            }
            let input = flag_input(fb, flag_key.clone(), "flag")?;
            (flag_key, Some(input))
        }
        _ => {
            return Err(ApiError::invalid_field(
                "flag",
                "`flag` is a flag key, or a flag object to create with the experiment",
            ));
        }
    };
    let experiment = b.input(key, flag_key)?;
    let e = state
        .store
        .create_experiment_with(
            &p.actor(),
            &project,
            &env,
            NewExperiment {
                experiment,
                flag: new_flag,
                start,
            },
        )
        .await?;
    let location = format!("{}/{}", uri.path(), e.key);
    Ok(created(&location, e.version, &e))
}

/// An optional JSON body: empty means `T::default()`.
fn optional_body<T: DeserializeOwned + Default>(raw: &Bytes, shape: &str) -> ApiResult<T> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(raw).map_err(|e| {
        crate::extract::serde_error(&e, format!("the body is optional, else {shape}: {e}"))
    })
}

async fn start(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((project, env, key)): ApiPath<(String, String, String)>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    allow(&p, Role::Editor, &project)?;
    let expected = if_match.version()?;
    let e = state
        .store
        .start_experiment(&p.actor(), &project, &env, &key, expected)
        .await?;
    Ok(versioned(StatusCode::OK, e.version, &e))
}

/// The optional body of `stop`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StopBody {
    #[serde(default)]
    winner: Option<String>,
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
    let StopBody { winner } = optional_body(&raw, "{\"winner\": \"<variation>\"}")?;
    if let Some(w) = &winner {
        check_key("winner", w)?;
    }
    let e = state
        .store
        .stop_experiment(&p.actor(), &project, &env, &key, expected, winner)
        .await?;
    Ok(versioned(StatusCode::OK, e.version, &e))
}

/// Runs one lifecycle step with the caller's `If-Match`.
async fn step(
    state: &AppState,
    p: &Principal,
    (project, env, key): (String, String, String),
    if_match: IfMatch,
    step: impl FnOnce() -> ApiResult<ExperimentStep>,
) -> ApiResult<Response> {
    allow(p, Role::Editor, &project)?;
    let expected = if_match.version()?;
    let step = step()?;
    let e = state
        .store
        .experiment_step(&p.actor(), &project, &env, &key, expected, step)
        .await?;
    Ok(versioned(StatusCode::OK, e.version, &e))
}

/// No body, or an empty one.
fn no_body(raw: &Bytes, verb: &str) -> ApiResult<()> {
    if raw.iter().all(u8::is_ascii_whitespace) || raw.as_ref() == b"{}" {
        Ok(())
    } else {
        Err(ApiError::BadRequest {
            code: "invalid_body",
            message: format!("{verb} takes no body"),
            field: None,
        })
    }
}

async fn pause(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(path): ApiPath<(String, String, String)>,
    if_match: IfMatch,
    raw: Bytes,
) -> ApiResult<Response> {
    step(&state, &p, path, if_match, || {
        no_body(&raw, "pause")?;
        Ok(ExperimentStep::Pause)
    })
    .await
}

async fn resume(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(path): ApiPath<(String, String, String)>,
    if_match: IfMatch,
    raw: Bytes,
) -> ApiResult<Response> {
    step(&state, &p, path, if_match, || {
        no_body(&raw, "resume")?;
        Ok(ExperimentStep::Resume)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShipBody {
    variation: String,
}

async fn ship(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(path): ApiPath<(String, String, String)>,
    if_match: IfMatch,
    raw: Bytes,
) -> ApiResult<Response> {
    step(&state, &p, path, if_match, || {
        let ShipBody { variation } = serde_json::from_slice(&raw).map_err(|e| {
            crate::extract::serde_error(
                &e,
                format!("the body is {{\"variation\": \"<variation>\"}}: {e}"),
            )
        })?;
        check_key("variation", &variation)?;
        Ok(ExperimentStep::Ship { variation })
    })
    .await
}

/// The optional body of `restart`: what the new phase changes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartBody {
    #[serde(default)]
    reshuffle: bool,
    #[serde(default)]
    variations: Option<Vec<WeightedVariation>>,
    #[serde(default)]
    coverage: Option<BasisPoints>,
    #[serde(default)]
    bucket_by: Option<String>,
    #[serde(default)]
    conditions: Option<Vec<Condition>>,
    /// `null` removes the layer; absent keeps it.
    #[serde(default, deserialize_with = "present")]
    layer: Option<Option<LayerRange>>,
    #[serde(default)]
    holdouts: Option<Vec<String>>,
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

async fn restart(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(path): ApiPath<(String, String, String)>,
    if_match: IfMatch,
    raw: Bytes,
) -> ApiResult<Response> {
    step(&state, &p, path, if_match, || {
        let b: RestartBody = optional_body(
            &raw,
            "{\"reshuffle\": bool, \"variations\", \"coverage\", \"bucket_by\", \
             \"conditions\", \"layer\", \"holdouts\"}",
        )?;
        if let Some(c) = b.coverage {
            check_basis_points("coverage", c)?;
        }
        if let Some(v) = &b.variations {
            if v.is_empty() {
                return Err(ApiError::invalid_field(
                    "variations",
                    "an experiment needs at least one variation",
                ));
            }
            for (i, w) in v.iter().enumerate() {
                check_basis_points(&format!("variations[{i}].weight"), w.weight)?;
            }
        }
        if let Some(b) = &b.bucket_by {
            check_name("bucket_by", b)?;
        }
        if let Some(Some(layer)) = &b.layer {
            check_key("layer.key", &layer.key)?;
            check_basis_points("layer.start", layer.start)?;
            check_basis_points("layer.end", layer.end)?;
        }
        if let Some(hs) = &b.holdouts {
            for (i, h) in hs.iter().enumerate() {
                check_key(&format!("holdouts[{i}]"), h)?;
            }
        }
        Ok(ExperimentStep::Restart(RestartInput {
            reshuffle: b.reshuffle,
            variations: b.variations,
            coverage: b.coverage,
            bucket_by: b.bucket_by,
            conditions: b.conditions,
            layer: b.layer,
            holdouts: b.holdouts,
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_body_tells_an_absent_layer_from_a_null_one() {
        let b: RestartBody = serde_json::from_str(r#"{"layer": null}"#).unwrap();
        assert_eq!(b.layer, Some(None));
        let b: RestartBody = serde_json::from_str(r#"{"reshuffle": true}"#).unwrap();
        assert_eq!((b.layer, b.reshuffle), (None, true));
    }
}
