//! Experiments, per project and environment, and their lifecycle: drafts
//! that start, run, pause, resume, stop, ship and restart as new phases
//! (the rules are in `crate::lifecycle`).

use async_trait::async_trait;
use sqlx::AnyConnection;
use switchyard_core::model::ExperimentStatus;

use super::documents::validate;
use super::resource::{Announce, Recorded, Resource, Scope, insert_new};
use super::rows::{self, enum_name};
use super::{SqlStore, Write, fmt_time, now, to_json};
use crate::error::{Result, StoreError};
use crate::lifecycle;
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
            breakdown_by: None,
            guardrails: GuardrailPolicy::default(),
            phase: 0,
            salt: None,
            started_at: None,
            stopped_at: None,
            version: 1,
        };
        new.apply(input)?;
        Ok(new)
    }

    /// Anything on a draft; on a running or paused experiment only what
    /// moves no assigned unit (see `crate::lifecycle::apply_edit`).
    fn apply(&mut self, input: ExperimentInput) -> Result<()> {
        lifecycle::apply_edit(self, input)
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
             breakdown_by = $15, phase = $16, salt = $17, guardrails = $18, \
             version = version + 1 WHERE project = $19 AND environment = $20 AND key = $21",
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
        .bind(e.breakdown_by.as_deref())
        .bind(i64::from(e.phase))
        .bind(e.salt.as_deref())
        .bind(to_json(&e.guardrails)?)
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
                    return Err(StoreError::WrongState(format!(
                        "experiment {key:?} is {}; only a draft experiment can be started",
                        e.status.as_str()
                    )));
                }
                e.status = ExperimentStatus::Running;
                e.started_at = Some(now());
                Ok(())
            },
        )
        .await
    }

    /// Running or paused to stopped, optionally shipping `winner` to everyone.
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
                if !matches!(
                    e.status,
                    ExperimentStatus::Running | ExperimentStatus::Paused
                ) {
                    return Err(StoreError::WrongState(format!(
                        "experiment {key:?} is {}; only a running or paused experiment can be \
                         stopped",
                        e.status.as_str()
                    )));
                }
                if let Some(w) = &winner
                    && !e.variations.iter().any(|v| &v.variation == w)
                {
                    return Err(StoreError::InvalidField {
                        field: "winner".into(),
                        message: format!(
                            "experiment {key:?}: winner {w:?} is not one of its variations"
                        ),
                    });
                }
                e.status = ExperimentStatus::Stopped;
                e.winner = winner;
                e.stopped_at = Some(now());
                Ok(())
            },
        )
        .await
    }

    /// Pause, resume, ship or restart (see `crate::lifecycle::apply_step`).
    pub(crate) async fn experiment_step_impl(
        &self,
        actor: &str,
        scope: Scope<'_>,
        key: &str,
        expected: Version,
        step: ExperimentStep,
    ) -> Result<ExperimentDefinition> {
        let action = lifecycle::action(&step);
        self.change(
            actor,
            action,
            scope,
            key,
            expected,
            |e: &mut ExperimentDefinition| lifecycle::apply_step(e, step, now()),
        )
        .await
    }

    /// One write: the flag (if asked), the experiment, started (if asked),
    /// each with its audit entry; nothing when any part fails.
    pub(crate) async fn create_experiment_with_impl(
        &self,
        actor: &str,
        scope: Scope<'_>,
        new: NewExperiment,
    ) -> Result<ExperimentDefinition> {
        let (project, environment) = scope.environment()?;
        let NewExperiment {
            experiment,
            flag,
            start,
        } = new;
        let key = experiment.key.clone();
        let mut w = self.write().await?;
        scope.require(w.conn()).await?;
        let with_flag = flag.is_some();
        if let Some(mut flag) = flag {
            if flag.key != experiment.flag {
                return Err(StoreError::InvalidField {
                    field: "flag.key".into(),
                    message: format!(
                        "the new flag's key {:?} differs from the experiment's flag {:?}",
                        flag.key, experiment.flag
                    ),
                });
            }
            let control = experiment
                .variations
                .first()
                .map(|v| v.variation.clone())
                .unwrap_or_default();
            flag.environments.insert(
                environment.to_string(),
                FlagEnvironment {
                    enabled: true,
                    off_variation: control,
                    prerequisites: Vec::new(),
                    rules: Vec::new(),
                    fallthrough: switchyard_core::model::Serve::Experiment(key.clone()),
                },
            );
            let created: FlagDefinition =
                insert_new(&mut w, Scope::Project(project), flag, |_| {}).await?;
            w.audit(
                actor,
                "create",
                "flag",
                Some(project),
                &created.key,
                None::<&()>,
                Some(&created),
            )
            .await?;
            // The flag is in every environment's document: all of them
            // change, and are checked once the experiment exists.
            w.touch(project, None).await?;
        }
        let created: ExperimentDefinition =
            insert_new(&mut w, scope, experiment, |e: &mut ExperimentDefinition| {
                if start {
                    e.status = ExperimentStatus::Running;
                    e.started_at = Some(now());
                }
            })
            .await?;
        if with_flag {
            validate(w.conn(), project, None).await?;
        }
        w.finish(actor, "create", None, Some(&created)).await?;
        Ok(created)
    }
}
