//! Experiments, per project and environment: drafts that start and stop.

use async_trait::async_trait;
use sqlx::AnyConnection;
use switchyard_core::model::ExperimentStatus;

use super::resource::{Announce, Recorded, Resource, Scope};
use super::rows::{self, enum_name};
use super::{SqlStore, Write, fmt_time, now, to_json};
use crate::error::{Result, StoreError};
use crate::types::*;

pub(crate) fn path(scope: Scope<'_>, key: &str) -> String {
    match scope {
        Scope::Environment(p, e) => format!("{p}/{e}/{key}"),
        _ => key.to_string(),
    }
}

impl Recorded for ExperimentDefinition {
    const KIND: &'static str = "experiment";
    fn id(&self) -> &str {
        &self.key
    }
    fn announce(&self) -> Announce<'_> {
        Announce::Config {
            project: &self.project,
            environment: Some(&self.environment),
            compile: true,
        }
    }
}

#[async_trait]
impl Resource for ExperimentDefinition {
    const TABLE: &'static str = "experiments";
    type Input = ExperimentInput;

    fn input_key(input: &ExperimentInput) -> &str {
        &input.key
    }
    fn path(scope: Scope<'_>, key: &str) -> String {
        path(scope, key)
    }

    async fn load(
        conn: &mut AnyConnection,
        scope: Scope<'_>,
        key: Option<&str>,
    ) -> Result<Vec<ExperimentDefinition>> {
        let (project, environment) = scope.environment()?;
        rows::experiments(conn, project, environment, key).await
    }

    /// A draft.
    async fn build(
        w: &mut Write<'_>,
        scope: Scope<'_>,
        input: ExperimentInput,
    ) -> Result<ExperimentDefinition> {
        let (project, environment) = scope.environment()?;
        if rows::flags(w.conn(), project, Some(&input.flag))
            .await?
            .is_empty()
        {
            return Err(StoreError::Invalid(format!(
                "experiment {:?}: unknown flag {:?}",
                input.key, input.flag
            )));
        }
        let mut new = ExperimentDefinition {
            project: project.to_string(),
            environment: environment.to_string(),
            key: input.key.clone(),
            flag: String::new(),
            name: String::new(),
            hypothesis: String::new(),
            status: ExperimentStatus::Draft,
            variations: Vec::new(),
            coverage: 0,
            bucket_by: String::new(),
            conditions: Vec::new(),
            layer: None,
            holdouts: Vec::new(),
            winner: None,
            metrics: Vec::new(),
            started_at: None,
            stopped_at: None,
            version: 1,
        };
        new.apply(input)?;
        Ok(new)
    }

    /// Only a draft can be edited.
    fn apply(&mut self, input: ExperimentInput) -> Result<()> {
        if self.status != ExperimentStatus::Draft {
            return Err(StoreError::Invalid(format!(
                "experiment {:?} is {}: only a draft can be edited",
                self.key,
                enum_name(&self.status)?
            )));
        }
        self.flag = input.flag;
        self.name = input.name;
        self.hypothesis = input.hypothesis;
        self.variations = input.variations;
        self.coverage = input.coverage;
        self.bucket_by = input.bucket_by;
        self.conditions = input.conditions;
        self.layer = input.layer;
        self.holdouts = input.holdouts;
        self.metrics = input.metrics;
        Ok(())
    }

    async fn check_references(w: &mut Write<'_>, e: &ExperimentDefinition) -> Result<()> {
        super::metrics::check_refs(w.conn(), &e.project, &e.metrics).await
    }

    async fn insert(w: &mut Write<'_>, new: &ExperimentDefinition) -> Result<()> {
        sqlx::query(
            "INSERT INTO experiments (project, environment, key, flag, name, hypothesis, status, \
             variations, coverage, bucket_by, conditions, holdouts, metrics, version) \
             VALUES ($1, $2, $3, '', '', '', 'draft', '[]', 0, '', '[]', '[]', '[]', 0)",
        )
        .bind(&new.project)
        .bind(&new.environment)
        .bind(&new.key)
        .execute(w.conn())
        .await?;
        Self::save(w, new).await
    }

    async fn save(w: &mut Write<'_>, e: &ExperimentDefinition) -> Result<()> {
        sqlx::query(
            "UPDATE experiments SET flag = $1, name = $2, hypothesis = $3, status = $4, \
             variations = $5, coverage = $6, bucket_by = $7, conditions = $8, layer = $9, \
             holdouts = $10, winner = $11, metrics = $12, started_at = $13, stopped_at = $14, \
             version = version + 1 WHERE project = $15 AND environment = $16 AND key = $17",
        )
        .bind(&e.flag)
        .bind(&e.name)
        .bind(&e.hypothesis)
        .bind(enum_name(&e.status)?)
        .bind(to_json(&e.variations)?)
        .bind(i64::from(e.coverage))
        .bind(&e.bucket_by)
        .bind(to_json(&e.conditions)?)
        .bind(e.layer.as_ref().map(to_json).transpose()?)
        .bind(to_json(&e.holdouts)?)
        .bind(e.winner.as_deref())
        .bind(to_json(&e.metrics)?)
        .bind(e.started_at.map(fmt_time))
        .bind(e.stopped_at.map(fmt_time))
        .bind(&e.project)
        .bind(&e.environment)
        .bind(&e.key)
        .execute(w.conn())
        .await?;
        Ok(())
    }
}

impl SqlStore {
    /// Draft to running.
    pub(crate) async fn start_experiment_impl(
        &self,
        actor: &str,
        scope: Scope<'_>,
        key: &str,
        expected: Version,
    ) -> Result<ExperimentDefinition> {
        self.change(
            actor,
            "start",
            scope,
            key,
            expected,
            |e: &mut ExperimentDefinition| {
                if e.status != ExperimentStatus::Draft {
                    return Err(StoreError::Invalid(format!(
                        "experiment {key:?} is {}: only a draft can start",
                        enum_name(&e.status)?
                    )));
                }
                e.status = ExperimentStatus::Running;
                e.started_at = Some(now());
                Ok(())
            },
        )
        .await
    }

    /// Running to stopped, optionally shipping `winner` to everyone.
    pub(crate) async fn stop_experiment_impl(
        &self,
        actor: &str,
        scope: Scope<'_>,
        key: &str,
        expected: Version,
        winner: Option<String>,
    ) -> Result<ExperimentDefinition> {
        self.change(
            actor,
            "stop",
            scope,
            key,
            expected,
            |e: &mut ExperimentDefinition| {
                if e.status != ExperimentStatus::Running {
                    return Err(StoreError::Invalid(format!(
                        "experiment {key:?} is {}: only a running experiment can stop",
                        enum_name(&e.status)?
                    )));
                }
                if let Some(w) = &winner
                    && !e.variations.iter().any(|v| &v.variation == w)
                {
                    return Err(StoreError::Invalid(format!(
                        "experiment {key:?}: winner {w:?} is not one of its variations"
                    )));
                }
                e.status = ExperimentStatus::Stopped;
                e.winner = winner;
                e.stopped_at = Some(now());
                Ok(())
            },
        )
        .await
    }
}
