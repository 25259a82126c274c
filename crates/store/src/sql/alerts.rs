//! Experiment alerts: written by the guardrail monitor, never edited.
//! Recording is idempotent per (experiment, phase, kind, metric,
//! variation), and a new alert is audited in the same transaction.

use sqlx::Row;

use super::resource::check_text;
use super::{SqlStore, fmt_time, now, parse_time, rows};
use crate::error::{Result, StoreError};
use crate::types::*;

/// Most alerts listed for one experiment (a finding is recorded once per
/// phase, so only many restarts come near it).
const MAX_LISTED: i64 = 1_000;

impl SqlStore {
    pub(crate) async fn record_experiment_alert_impl(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        experiment: &str,
        input: AlertInput,
    ) -> Result<Option<ExperimentAlert>> {
        check_text(&input)?;
        let mut w = self.write().await?;
        if rows::experiments(w.conn(), project, environment, Some(experiment))
            .await?
            .is_empty()
        {
            return Err(StoreError::not_found(
                "experiment",
                format!("{project}/{environment}/{experiment}"),
            ));
        }
        let alert = ExperimentAlert {
            project: project.to_string(),
            environment: environment.to_string(),
            experiment: experiment.to_string(),
            phase: input.phase,
            kind: input.kind,
            metric: input.metric,
            variation: input.variation,
            message: input.message,
            action: input.action,
            created_at: now(),
        };
        let inserted = sqlx::query(
            "INSERT INTO experiment_alerts (project, environment, experiment, phase, kind, \
             metric, variation, message, action, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
        )
        .bind(project)
        .bind(environment)
        .bind(experiment)
        .bind(i64::from(alert.phase))
        .bind(&alert.kind)
        .bind(alert.metric.as_deref().unwrap_or(""))
        .bind(alert.variation.as_deref().unwrap_or(""))
        .bind(&alert.message)
        .bind(&alert.action)
        .bind(fmt_time(alert.created_at))
        .execute(w.conn())
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(None);
        }
        w.audit(
            actor,
            "alert",
            "experiment",
            Some(project),
            &format!("{environment}/{experiment}"),
            None::<&ExperimentAlert>,
            Some(&alert),
        )
        .await?;
        w.commit().await?;
        Ok(Some(alert))
    }

    pub(crate) async fn list_experiment_alerts_impl(
        &self,
        project: &str,
        environment: &str,
        experiment: &str,
    ) -> Result<Vec<ExperimentAlert>> {
        let mut conn = self.read().await?;
        let found = sqlx::query(
            "SELECT phase, kind, metric, variation, message, action, created_at \
             FROM experiment_alerts WHERE project = $1 AND environment = $2 AND experiment = $3 \
             ORDER BY created_at, phase, kind, metric, variation LIMIT $4",
        )
        .bind(project)
        .bind(environment)
        .bind(experiment)
        .bind(MAX_LISTED)
        .fetch_all(&mut *conn)
        .await?;
        let optional = |s: String| if s.is_empty() { None } else { Some(s) };
        found
            .into_iter()
            .map(|r| {
                Ok(ExperimentAlert {
                    project: project.to_string(),
                    environment: environment.to_string(),
                    experiment: experiment.to_string(),
                    phase: u32::try_from(r.try_get::<i64, _>(0)?).unwrap_or_default(),
                    kind: r.try_get(1)?,
                    metric: optional(r.try_get(2)?),
                    variation: optional(r.try_get(3)?),
                    message: r.try_get(4)?,
                    action: r.try_get(5)?,
                    created_at: parse_time(&r.try_get::<String, _>(6)?)?,
                })
            })
            .collect()
    }
}
