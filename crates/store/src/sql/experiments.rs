//! Experiments and holdouts: per project and environment.

use switchyard_core::model::ExperimentStatus;

use super::documents::validate;
use super::projects::check_key;
use super::rows::{self, enum_name};
use super::{SqlStore, Write, check_version, fmt_time, now, to_json};
use crate::error::{Result, StoreError};
use crate::types::*;

fn path(project: &str, environment: &str, key: &str) -> String {
    format!("{project}/{environment}/{key}")
}

async fn require_environment(w: &mut Write<'_>, project: &str, environment: &str) -> Result<()> {
    match rows::find_environment(w.conn(), project, environment).await? {
        Some(_) => Ok(()),
        None => Err(StoreError::not_found(
            "environment",
            format!("{project}/{environment}"),
        )),
    }
}

async fn find_experiment(
    w: &mut Write<'_>,
    project: &str,
    environment: &str,
    key: &str,
) -> Result<ExperimentDefinition> {
    rows::experiments(w.conn(), project, environment, Some(key))
        .await?
        .pop()
        .ok_or_else(|| StoreError::not_found("experiment", path(project, environment, key)))
}

async fn find_holdout(
    w: &mut Write<'_>,
    project: &str,
    environment: &str,
    key: &str,
) -> Result<Option<HoldoutDefinition>> {
    Ok(rows::holdouts(w.conn(), project, environment, Some(key))
        .await?
        .pop())
}

/// Writes `e` over the stored experiment of the same key (which must exist).
async fn save_experiment(w: &mut Write<'_>, e: &ExperimentDefinition) -> Result<()> {
    sqlx::query(
        "UPDATE experiments SET flag = $1, name = $2, hypothesis = $3, status = $4, \
         variations = $5, coverage = $6, bucket_by = $7, conditions = $8, layer = $9, \
         holdouts = $10, winner = $11, metrics = $12, started_at = $13, stopped_at = $14, \
         version = $15 WHERE project = $16 AND environment = $17 AND key = $18",
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
    .bind(e.version)
    .bind(&e.project)
    .bind(&e.environment)
    .bind(&e.key)
    .execute(w.conn())
    .await?;
    Ok(())
}

fn apply_input(e: &mut ExperimentDefinition, input: ExperimentInput) {
    e.flag = input.flag;
    e.name = input.name;
    e.hypothesis = input.hypothesis;
    e.variations = input.variations;
    e.coverage = input.coverage;
    e.bucket_by = input.bucket_by;
    e.conditions = input.conditions;
    e.layer = input.layer;
    e.holdouts = input.holdouts;
    e.metrics = input.metrics;
}

impl SqlStore {
    pub(crate) async fn list_experiments_impl(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<Vec<ExperimentDefinition>> {
        let mut conn = self.read().await?;
        if rows::find_environment(&mut conn, project, environment)
            .await?
            .is_none()
        {
            return Err(StoreError::not_found(
                "environment",
                format!("{project}/{environment}"),
            ));
        }
        rows::experiments(&mut conn, project, environment, None).await
    }

    pub(crate) async fn get_experiment_impl(
        &self,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<ExperimentDefinition> {
        rows::experiments(&mut *self.read().await?, project, environment, Some(key))
            .await?
            .pop()
            .ok_or_else(|| StoreError::not_found("experiment", path(project, environment, key)))
    }

    pub(crate) async fn create_experiment_impl(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        input: ExperimentInput,
    ) -> Result<ExperimentDefinition> {
        check_key("experiment", &input.key)?;
        let mut w = self.write().await?;
        require_environment(&mut w, project, environment).await?;
        let existing = rows::experiments(w.conn(), project, environment, Some(&input.key)).await?;
        if !existing.is_empty() {
            return Err(StoreError::AlreadyExists {
                kind: "experiment",
                key: path(project, environment, &input.key),
            });
        }
        if rows::flags(w.conn(), project, Some(&input.flag))
            .await?
            .is_empty()
        {
            return Err(StoreError::Invalid(format!(
                "experiment {:?}: unknown flag {:?}",
                input.key, input.flag
            )));
        }
        sqlx::query(
            "INSERT INTO experiments (project, environment, key, flag, name, hypothesis, status, \
             variations, coverage, bucket_by, conditions, holdouts, metrics, version) \
             VALUES ($1, $2, $3, '', '', '', 'draft', '[]', 0, '', '[]', '[]', '[]', 1)",
        )
        .bind(project)
        .bind(environment)
        .bind(&input.key)
        .execute(w.conn())
        .await?;
        let mut created = ExperimentDefinition {
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
        apply_input(&mut created, input);
        save_experiment(&mut w, &created).await?;
        validate(w.conn(), project, Some(environment)).await?;
        w.audit(
            actor,
            "create",
            "experiment",
            Some(project),
            &created.key,
            None::<&()>,
            Some(&created),
        )
        .await?;
        w.touch(project, Some(environment)).await?;
        w.commit().await?;
        Ok(created)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn update_experiment_impl(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
        input: ExperimentInput,
    ) -> Result<ExperimentDefinition> {
        if input.key != key {
            return Err(StoreError::Invalid(format!(
                "experiment key {key:?} cannot change to {:?}",
                input.key
            )));
        }
        self.transition(actor, "update", project, environment, key, expected, |e| {
            if e.status != ExperimentStatus::Draft {
                return Err(StoreError::Invalid(format!(
                    "experiment {key:?} is {}: only a draft can be edited",
                    enum_name(&e.status)?
                )));
            }
            apply_input(e, input);
            Ok(())
        })
        .await
    }

    pub(crate) async fn start_experiment_impl(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
    ) -> Result<ExperimentDefinition> {
        self.transition(actor, "start", project, environment, key, expected, |e| {
            if e.status != ExperimentStatus::Draft {
                return Err(StoreError::Invalid(format!(
                    "experiment {key:?} is {}: only a draft can start",
                    enum_name(&e.status)?
                )));
            }
            e.status = ExperimentStatus::Running;
            e.started_at = Some(now());
            Ok(())
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn stop_experiment_impl(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
        winner: Option<String>,
    ) -> Result<ExperimentDefinition> {
        self.transition(actor, "stop", project, environment, key, expected, |e| {
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
        })
        .await
    }

    /// Reads, changes with `change`, checks and saves one experiment.
    #[allow(clippy::too_many_arguments)]
    async fn transition(
        &self,
        actor: &str,
        action: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
        change: impl FnOnce(&mut ExperimentDefinition) -> Result<()>,
    ) -> Result<ExperimentDefinition> {
        let mut w = self.write().await?;
        let before = find_experiment(&mut w, project, environment, key).await?;
        check_version("experiment", key, before.version, expected)?;
        let mut after = before.clone();
        change(&mut after)?;
        after.version += 1;
        save_experiment(&mut w, &after).await?;
        validate(w.conn(), project, Some(environment)).await?;
        w.audit(
            actor,
            action,
            "experiment",
            Some(project),
            key,
            Some(&before),
            Some(&after),
        )
        .await?;
        w.touch(project, Some(environment)).await?;
        w.commit().await?;
        Ok(after)
    }

    pub(crate) async fn delete_experiment_impl(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
    ) -> Result<()> {
        let mut w = self.write().await?;
        let before = find_experiment(&mut w, project, environment, key).await?;
        check_version("experiment", key, before.version, expected)?;
        sqlx::query("DELETE FROM experiments WHERE project = $1 AND environment = $2 AND key = $3")
            .bind(project)
            .bind(environment)
            .bind(key)
            .execute(w.conn())
            .await?;
        // A flag rule may still serve this experiment.
        validate(w.conn(), project, Some(environment)).await?;
        w.audit(
            actor,
            "delete",
            "experiment",
            Some(project),
            key,
            Some(&before),
            None::<&()>,
        )
        .await?;
        w.touch(project, Some(environment)).await?;
        w.commit().await
    }

    pub(crate) async fn list_holdouts_impl(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<Vec<HoldoutDefinition>> {
        let mut conn = self.read().await?;
        if rows::find_environment(&mut conn, project, environment)
            .await?
            .is_none()
        {
            return Err(StoreError::not_found(
                "environment",
                format!("{project}/{environment}"),
            ));
        }
        rows::holdouts(&mut conn, project, environment, None).await
    }

    pub(crate) async fn get_holdout_impl(
        &self,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<HoldoutDefinition> {
        rows::holdouts(&mut *self.read().await?, project, environment, Some(key))
            .await?
            .pop()
            .ok_or_else(|| StoreError::not_found("holdout", path(project, environment, key)))
    }

    /// Creates (`expected: None`) or updates a holdout.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn put_holdout(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        expected: Option<Version>,
        input: HoldoutInput,
    ) -> Result<HoldoutDefinition> {
        check_key("holdout", &input.key)?;
        let mut w = self.write().await?;
        require_environment(&mut w, project, environment).await?;
        let before = find_holdout(&mut w, project, environment, &input.key).await?;
        let version = match (expected, &before) {
            (None, Some(_)) => {
                return Err(StoreError::AlreadyExists {
                    kind: "holdout",
                    key: path(project, environment, &input.key),
                });
            }
            (Some(_), None) => {
                return Err(StoreError::not_found(
                    "holdout",
                    path(project, environment, &input.key),
                ));
            }
            (Some(expected), Some(b)) => {
                check_version("holdout", &input.key, b.version, expected)?;
                b.version + 1
            }
            (None, None) => 1,
        };
        sqlx::query("DELETE FROM holdouts WHERE project = $1 AND environment = $2 AND key = $3")
            .bind(project)
            .bind(environment)
            .bind(&input.key)
            .execute(w.conn())
            .await?;
        sqlx::query(
            "INSERT INTO holdouts (project, environment, key, size, bucket_by, version) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(project)
        .bind(environment)
        .bind(&input.key)
        .bind(i64::from(input.size))
        .bind(&input.bucket_by)
        .bind(version)
        .execute(w.conn())
        .await?;
        validate(w.conn(), project, Some(environment)).await?;
        let after = HoldoutDefinition {
            project: project.to_string(),
            environment: environment.to_string(),
            key: input.key,
            size: input.size,
            bucket_by: input.bucket_by,
            version,
        };
        let action = if before.is_some() { "update" } else { "create" };
        w.audit(
            actor,
            action,
            "holdout",
            Some(project),
            &after.key,
            before.as_ref(),
            Some(&after),
        )
        .await?;
        w.touch(project, Some(environment)).await?;
        w.commit().await?;
        Ok(after)
    }

    pub(crate) async fn delete_holdout_impl(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
    ) -> Result<()> {
        let mut w = self.write().await?;
        let before = find_holdout(&mut w, project, environment, key)
            .await?
            .ok_or_else(|| StoreError::not_found("holdout", path(project, environment, key)))?;
        check_version("holdout", key, before.version, expected)?;
        sqlx::query("DELETE FROM holdouts WHERE project = $1 AND environment = $2 AND key = $3")
            .bind(project)
            .bind(environment)
            .bind(key)
            .execute(w.conn())
            .await?;
        validate(w.conn(), project, Some(environment)).await?;
        w.audit(
            actor,
            "delete",
            "holdout",
            Some(project),
            key,
            Some(&before),
            None::<&()>,
        )
        .await?;
        w.touch(project, Some(environment)).await?;
        w.commit().await
    }
}
