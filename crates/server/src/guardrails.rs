//! The guardrail monitor: every `interval`, each running experiment's
//! results are checked ([`switchyard_aggregate::guardrail::check`]: a
//! guardrail metric significantly harmed under an always-valid sequential
//! test, or a sample ratio mismatch). A finding is recorded as an alert
//! once per phase (audited, by the actor [`ACTOR`]); when the experiment
//! asks for it (`guardrails.auto_stop`), the experiment is stopped and its
//! baseline variation shipped (served to everyone), also audited.
//!
//! The monitor only reads the aggregator and writes through the config
//! store: with the store out of reach it logs and tries again next time.

use std::sync::Arc;
use std::time::Duration;

use switchyard_aggregate::guardrail::{self, Alert, AlertKind};
use switchyard_core::model::ExperimentStatus;
use switchyard_store::{AlertInput, ConfigStore, ExperimentDefinition, ExperimentStep, StoreError};
use tokio::sync::watch;

use crate::aggregation::Aggregation;

/// Who the audit log says recorded an alert or stopped an experiment.
pub const ACTOR: &str = "system:guardrails";

/// Significance level of the guardrail tests.
const ALPHA: f64 = 0.05;

/// What one pass found and did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub experiments: usize,
    pub alerts: usize,
    pub stopped: usize,
}

/// Checks every running experiment once.
pub async fn check_all(
    store: &dyn ConfigStore,
    aggregation: &Aggregation,
) -> Result<Pass, StoreError> {
    let mut pass = Pass::default();
    for project in store.list_projects().await? {
        for env in store.list_environments(&project.key).await? {
            for e in store.list_experiments(&project.key, &env.key).await? {
                if e.status != ExperimentStatus::Running {
                    continue;
                }
                pass.experiments += 1;
                let (alerts, stopped) = check_one(store, aggregation, &e).await?;
                pass.alerts += alerts;
                pass.stopped += usize::from(stopped);
            }
        }
    }
    Ok(pass)
}

/// Checks one running experiment: how many new alerts it recorded, and
/// whether it stopped the experiment.
async fn check_one(
    store: &dyn ConfigStore,
    aggregation: &Aggregation,
    e: &ExperimentDefinition,
) -> Result<(usize, bool), StoreError> {
    let weights = e.variations.iter().map(|v| f64::from(v.weight)).collect();
    let opts = guardrail::guardrail_options(ALPHA, 0, weights);
    let results = match aggregation.results(&e.project, &e.environment, &e.key, &opts) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok((0, false)),
        Err(err) => {
            tracing::warn!(experiment = %e.key, error = %err, "guardrails: no results");
            return Ok((0, false));
        }
    };
    let findings = guardrail::check(&results);
    if findings.is_empty() {
        return Ok((0, false));
    }
    // Stop first, so that an alert says what was really done. When the
    // stop loses a race with an editor (a version conflict), the alert is
    // recorded as `recorded` and the next pass, seeing the same finding on
    // a still running experiment, stops it then (audited as the ship).
    let stopped = auto_stop(e) && ship_baseline(store, e).await?;
    let mut new = 0;
    for alert in &findings {
        let recorded = store
            .record_experiment_alert(
                ACTOR,
                &e.project,
                &e.environment,
                &e.key,
                input(results.phase, alert, stopped),
            )
            .await?;
        if recorded.is_some() {
            new += 1;
            tracing::warn!(
                project = %e.project,
                environment = %e.environment,
                experiment = %e.key,
                stopped,
                "guardrail alert: {}",
                alert.message
            );
        }
    }
    Ok((new, stopped))
}

/// Ships the baseline (first) variation: stopped, served to everyone.
/// `false` when someone changed the experiment meanwhile.
async fn ship_baseline(
    store: &dyn ConfigStore,
    e: &ExperimentDefinition,
) -> Result<bool, StoreError> {
    let Some(baseline) = e.variations.first().map(|v| v.variation.clone()) else {
        return Ok(false);
    };
    match store
        .experiment_step(
            ACTOR,
            &e.project,
            &e.environment,
            &e.key,
            e.version,
            ExperimentStep::Ship {
                variation: baseline.clone(),
            },
        )
        .await
    {
        Ok(_) => {
            tracing::warn!(
                project = %e.project,
                environment = %e.environment,
                experiment = %e.key,
                serving = %baseline,
                "guardrails: experiment stopped, baseline served to everyone"
            );
            Ok(true)
        }
        Err(StoreError::Conflict { .. }) => Ok(false),
        Err(err) => Err(err),
    }
}

fn input(phase: u32, alert: &Alert, stop: bool) -> AlertInput {
    AlertInput {
        phase,
        kind: match alert.kind {
            AlertKind::GuardrailHarmed => "guardrail_harmed",
            AlertKind::SampleRatioMismatch => "sample_ratio_mismatch",
        }
        .into(),
        metric: alert.metric.clone(),
        variation: alert.variation.clone(),
        message: alert.message.clone(),
        action: if stop { "stopped" } else { "recorded" }.into(),
    }
}

/// Whether the experiment stops itself on an alert.
fn auto_stop(e: &ExperimentDefinition) -> bool {
    e.guardrails.auto_stop
}

/// Runs [`check_all`] every `interval` until `shutdown` turns true.
pub async fn run(
    store: Arc<dyn ConfigStore>,
    aggregation: Arc<Aggregation>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
        match check_all(store.as_ref(), &aggregation).await {
            Ok(pass) if pass.alerts > 0 || pass.stopped > 0 => {
                tracing::info!(?pass, "guardrails: pass done");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "guardrails: cannot check experiments"),
        }
    }
}
