//! Metric definitions, per project. Experiments refer to them by key: a
//! reference to an unknown metric is refused, and so is deleting a metric
//! an experiment refers to.

use async_trait::async_trait;
use sqlx::AnyConnection;
use switchyard_core::metric::MetricDefinition;

use super::resource::{Announce, Recorded, Resource, Scope};
use super::rows::{int, json, text};
use super::{Write, fmt_time, now, parse_time, to_json};
use crate::error::{Result, StoreError};
use crate::types::*;

impl Recorded for Metric {
    const KIND: &'static str = "metric";
    fn id(&self) -> &str {
        &self.definition.key
    }
    /// Not in any evaluation document; the aggregator re-reads its
    /// experiments' metrics on the change.
    fn announce(&self) -> Announce<'_> {
        Announce::Config {
            project: &self.project,
            environment: None,
            compile: false,
        }
    }
}

#[async_trait]
impl Resource for Metric {
    const TABLE: &'static str = "metrics";
    type Input = MetricDefinition;

    fn input_key(input: &MetricDefinition) -> &str {
        &input.key
    }

    async fn load(
        conn: &mut AnyConnection,
        scope: Scope<'_>,
        key: Option<&str>,
    ) -> Result<Vec<Metric>> {
        sqlx::query(
            "SELECT project, definition, version, updated_at FROM metrics \
             WHERE project = $1 AND ($2 IS NULL OR key = $2) ORDER BY key",
        )
        .bind(scope.project()?)
        .bind(key)
        .fetch_all(conn)
        .await?
        .iter()
        .map(|row| {
            Ok(Metric {
                project: text(row, "project")?,
                definition: json(row, "definition")?,
                version: int(row, "version")?,
                updated_at: parse_time(&text(row, "updated_at")?)?,
            })
        })
        .collect()
    }

    async fn build(
        _w: &mut Write<'_>,
        scope: Scope<'_>,
        input: MetricDefinition,
    ) -> Result<Metric> {
        validate(&input)?;
        Ok(Metric {
            project: scope.project()?.to_string(),
            definition: input,
            version: 1,
            updated_at: now(),
        })
    }

    fn apply(&mut self, input: MetricDefinition) -> Result<()> {
        validate(&input)?;
        self.definition = input;
        self.updated_at = now();
        Ok(())
    }

    /// Refuses while an experiment of the project refers to it.
    async fn check_unused(w: &mut Write<'_>, metric: &Metric) -> Result<()> {
        let users: Vec<String> = super::rows::all_experiments(w.conn(), &metric.project)
            .await?
            .into_iter()
            .filter(|e| e.metrics.iter().any(|m| m.metric == metric.definition.key))
            .map(|e| format!("experiment {:?}", format!("{}/{}", e.environment, e.key)))
            .collect();
        if users.is_empty() {
            Ok(())
        } else {
            Err(StoreError::InUse {
                kind: "metric",
                key: metric.definition.key.clone(),
                users,
            })
        }
    }

    async fn insert(w: &mut Write<'_>, new: &Metric) -> Result<()> {
        sqlx::query(
            "INSERT INTO metrics (project, key, definition, version, updated_at) \
             VALUES ($1, $2, $3, 1, $4)",
        )
        .bind(&new.project)
        .bind(&new.definition.key)
        .bind(to_json(&new.definition)?)
        .bind(fmt_time(new.updated_at))
        .execute(w.conn())
        .await?;
        Ok(())
    }

    async fn save(w: &mut Write<'_>, changed: &Metric) -> Result<()> {
        sqlx::query(
            "UPDATE metrics SET definition = $1, updated_at = $2, version = version + 1 \
             WHERE project = $3 AND key = $4",
        )
        .bind(to_json(&changed.definition)?)
        .bind(fmt_time(changed.updated_at))
        .bind(&changed.project)
        .bind(&changed.definition.key)
        .execute(w.conn())
        .await?;
        Ok(())
    }
}

/// The definition's own checks; a failure names its field.
fn validate(definition: &MetricDefinition) -> Result<()> {
    definition.validate().map_err(|e| StoreError::InvalidField {
        message: e.to_string(),
        field: e.field,
    })
}

/// Refuses references to metrics the project does not define, and a
/// metric listed twice, naming the field (`metrics[1]`).
pub(crate) async fn check_refs(
    conn: &mut AnyConnection,
    project: &str,
    refs: &[MetricRef],
) -> Result<()> {
    if refs.is_empty() {
        return Ok(());
    }
    let known: Vec<String> = Metric::load(conn, Scope::Project(project), None)
        .await?
        .into_iter()
        .map(|m| m.definition.key)
        .collect();
    for (i, r) in refs.iter().enumerate() {
        let field = format!("metrics[{i}]");
        if !known.contains(&r.metric) {
            return Err(StoreError::InvalidField {
                message: format!("{field}: unknown metric {:?}", r.metric),
                field,
            });
        }
        if refs[..i].iter().any(|o| o.metric == r.metric) {
            return Err(StoreError::InvalidField {
                message: format!("{field}: metric {:?} is listed twice", r.metric),
                field,
            });
        }
    }
    Ok(())
}
