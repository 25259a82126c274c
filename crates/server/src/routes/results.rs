//! `GET /api/v1/projects/{project}/environments/{env}/experiments/{experiment}/results`:
//! an experiment's results from the streaming aggregator: per metric and
//! variation the statistics engine's output, units, exposures, excluded
//! units, SRM against the configured weights, freshness, warnings and the
//! cumulative effect per hour. Viewers may read it.
//!
//! The analysis settings come from the query string (`engine`,
//! `sequential`, `correction`, `alpha`, `points`), each defaulting to the
//! engine's default; docs/results.md lists them.
//!
//! `POST .../replay` (editors) recomputes the experiment's aggregates from
//! the retained event log beside the live aggregator and swaps them in
//! when done (after a metric was added or changed); it answers `202` with
//! the progress document that `GET .../replay` (viewers) returns.

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use switchyard_aggregate::{AnalysisOptions, ExperimentResults};
use switchyard_core::model::ExperimentStatus;
use switchyard_stats::{Correction, Engine, Settings};
use switchyard_store::{ExperimentDefinition, Role};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Most points of the cumulative series a request may ask for.
const MAX_POINTS: usize = 2_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/projects/{project}/environments/{env}/experiments/{experiment}/results",
            get(results),
        )
        .route(
            "/api/v1/projects/{project}/environments/{env}/experiments/{experiment}/replay",
            get(replay_progress).post(start_replay),
        )
}

type ExperimentPath = Result<Path<(String, String, String)>, PathRejection>;

fn experiment_path(path: ExperimentPath) -> ApiResult<(String, String, String)> {
    let Path(p) =
        path.map_err(|e| ApiError::bad_request(format!("invalid path: {}", e.body_text())))?;
    Ok(p)
}

async fn start_replay(
    State(state): State<AppState>,
    p: Principal,
    path: ExperimentPath,
) -> ApiResult<Response> {
    let (project, env, key) = experiment_path(path)?;
    p.require_admin(Role::Editor, Some(&project))?;
    let experiment = state.store.get_experiment(&project, &env, &key).await?;
    if experiment.status == ExperimentStatus::Draft {
        return Err(ApiError::Conflict(format!(
            "experiment {key:?} is a draft: there is nothing to replay"
        )));
    }
    let (Some(agg), Some(events)) = (state.aggregation.clone(), state.events.clone()) else {
        return Err(ApiError::Unavailable(
            "the aggregator is not running on this server".into(),
        ));
    };
    // The replay computes the metrics as defined now.
    agg.refresh(state.store.as_ref()).await?;
    use crate::aggregation::ReplayError;
    let progress = agg
        .start_replay(events.stream().clone(), &project, &env, &key)
        .map_err(|e| match e {
            ReplayError::Running | ReplayError::Busy => ApiError::Conflict(e.to_string()),
            ReplayError::NotAggregated | ReplayError::Clustered => {
                ApiError::Unavailable(e.to_string())
            }
        })?;
    let location =
        format!("/api/v1/projects/{project}/environments/{env}/experiments/{key}/replay");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(progress),
    )
        .into_response())
}

async fn replay_progress(
    State(state): State<AppState>,
    p: Principal,
    path: ExperimentPath,
) -> ApiResult<Response> {
    let (project, env, key) = experiment_path(path)?;
    p.require_admin(Role::Viewer, Some(&project))?;
    state.store.get_experiment(&project, &env, &key).await?;
    let progress = state
        .aggregation
        .as_ref()
        .and_then(|a| a.replay_progress(&project, &env, &key))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no replay of experiment {key:?} has run on this server since it started"
            ))
        })?;
    Ok(axum::Json(progress).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultsQuery {
    #[serde(default)]
    engine: Option<Engine>,
    #[serde(default)]
    sequential: Option<bool>,
    #[serde(default)]
    correction: Option<Correction>,
    #[serde(default)]
    alpha: Option<f64>,
    #[serde(default)]
    points: Option<usize>,
    /// Include the breakdown by the experiment's breakdown attribute
    /// (default: yes when it has one).
    #[serde(default)]
    breakdown: Option<bool>,
}

/// An experiment's results from the aggregator, with `opts`; the
/// aggregator reloads the experiments once when it has not heard of this
/// one yet (started a moment ago). The results API and the UI's results
/// page both read them here.
pub(crate) async fn aggregated(
    state: &AppState,
    experiment: &ExperimentDefinition,
    opts: &AnalysisOptions,
) -> ApiResult<ExperimentResults> {
    let Some(agg) = state.aggregation.clone() else {
        return Err(ApiError::Unavailable(
            "the aggregator is not running on this server".into(),
        ));
    };
    let (project, env, key) = (
        experiment.project.as_str(),
        experiment.environment.as_str(),
        experiment.key.as_str(),
    );
    let invalid = |e: switchyard_aggregate::ResultsError| {
        ApiError::invalid_field(
            e.field.strip_prefix("settings.").unwrap_or(&e.field),
            e.message,
        )
    };
    let mut found = agg.results(project, env, key, opts).map_err(invalid)?;
    if found.is_none() {
        // Started a moment ago: the consumer has not heard of it yet.
        agg.refresh(state.store.as_ref()).await?;
        found = agg.results(project, env, key, opts).map_err(invalid)?;
    }
    found.ok_or_else(|| ApiError::Unavailable("the experiment's results are not ready yet".into()))
}

fn rfc3339(ms: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

async fn results(
    State(state): State<AppState>,
    p: Principal,
    path: Result<Path<(String, String, String)>, PathRejection>,
    query: Result<Query<ResultsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Path((project, env, key)) =
        path.map_err(|e| ApiError::bad_request(format!("invalid path: {}", e.body_text())))?;
    p.require_admin(Role::Viewer, Some(&project))?;
    let Query(q) = query.map_err(|e| ApiError::BadRequest {
        code: "invalid_query",
        message: e.body_text(),
        field: None,
    })?;
    let mut settings = Settings::default();
    if let Some(e) = q.engine {
        settings.engine = e;
    }
    if let Some(s) = q.sequential {
        settings.sequential = s;
    }
    if let Some(c) = q.correction {
        settings.correction = c;
    }
    if let Some(a) = q.alpha {
        settings.alpha = a;
    }
    let points = q.points.unwrap_or(500);
    if points > MAX_POINTS {
        return Err(ApiError::invalid_field(
            "points",
            format!("at most {MAX_POINTS}"),
        ));
    }
    let experiment = state.store.get_experiment(&project, &env, &key).await?;
    if experiment.status == ExperimentStatus::Draft {
        return Err(ApiError::Conflict(format!(
            "experiment {key:?} is a draft: it has results once it is started"
        )));
    }
    let opts = AnalysisOptions {
        settings,
        weights: experiment
            .variations
            .iter()
            .map(|v| f64::from(v.weight))
            .collect(),
        max_points: points,
        breakdown: q.breakdown.unwrap_or(true),
    };
    let r = aggregated(&state, &experiment, &opts).await?;
    let mut body = serde_json::to_value(&r)
        .map_err(|e| ApiError::Internal(format!("results do not serialise: {e}")))?;
    // `serve --demo` feeds this experiment with simulated events: say so
    // beside the numbers, not only in the docs.
    let simulation = state
        .simulation
        .as_ref()
        .filter(|s| s.feeds(&project, &env, &key));
    body["simulated"] = simulation.is_some().into();
    if let Some(sim) = simulation
        && let Some(w) = body["warnings"].as_array_mut()
    {
        w.push(serde_json::json!({"code": "simulated_traffic", "message": sim.note()}));
    }
    body["project"] = project.as_str().into();
    body["environment"] = env.as_str().into();
    body["status"] = serde_json::to_value(experiment.status).unwrap_or_default();
    // What the guardrail monitor found (crates/server/src/guardrails.rs).
    let alerts = state
        .store
        .list_experiment_alerts(&project, &env, &key)
        .await?;
    body["alerts"] = serde_json::to_value(&alerts).unwrap_or_default();
    if let Some(events) = &state.events {
        // How far the stream goes now: `offset` below it means the results
        // are behind by the events in between.
        body["freshness"]["stream_end"] = events.stream().bounds().1.into();
    }
    if let Some(t) = r.freshness.max_event_ms.and_then(rfc3339) {
        body["freshness"]["max_event_time"] = t.into();
    }
    if let Some(points) = body["series"].as_array_mut() {
        for (p, s) in points.iter_mut().zip(&r.series) {
            if let Some(t) = rfc3339(s.time_ms) {
                p["time"] = t.into();
            }
        }
    }
    Ok(axum::Json(body).into_response())
}
