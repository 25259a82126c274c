//! Holdouts, per project and environment: units kept out of the
//! experiments that name them.

use async_trait::async_trait;
use sqlx::AnyConnection;

use super::resource::{Announce, Recorded, Resource, Scope};
use super::{Write, experiments, rows};
use crate::error::Result;
use crate::types::*;

impl Recorded for HoldoutDefinition {
    const KIND: &'static str = "holdout";
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
impl Resource for HoldoutDefinition {
    const TABLE: &'static str = "holdouts";
    type Input = HoldoutInput;

    fn input_key(input: &HoldoutInput) -> &str {
        &input.key
    }
    fn path(scope: Scope<'_>, key: &str) -> String {
        experiments::path(scope, key)
    }

    async fn load(
        conn: &mut AnyConnection,
        scope: Scope<'_>,
        key: Option<&str>,
    ) -> Result<Vec<HoldoutDefinition>> {
        let (project, environment) = scope.environment()?;
        rows::holdouts(conn, project, environment, key).await
    }

    async fn build(
        _w: &mut Write<'_>,
        scope: Scope<'_>,
        input: HoldoutInput,
    ) -> Result<HoldoutDefinition> {
        let (project, environment) = scope.environment()?;
        Ok(HoldoutDefinition {
            project: project.to_string(),
            environment: environment.to_string(),
            key: input.key,
            size: input.size,
            bucket_by: input.bucket_by,
            version: 1,
        })
    }

    fn apply(&mut self, input: HoldoutInput) -> Result<()> {
        self.size = input.size;
        self.bucket_by = input.bucket_by;
        Ok(())
    }

    async fn insert(w: &mut Write<'_>, new: &HoldoutDefinition) -> Result<()> {
        sqlx::query(
            "INSERT INTO holdouts (project, environment, key, size, bucket_by, version) \
             VALUES ($1, $2, $3, 0, '', 0)",
        )
        .bind(&new.project)
        .bind(&new.environment)
        .bind(&new.key)
        .execute(w.conn())
        .await?;
        Self::save(w, new).await
    }

    async fn save(w: &mut Write<'_>, changed: &HoldoutDefinition) -> Result<()> {
        sqlx::query(
            "UPDATE holdouts SET size = $1, bucket_by = $2, version = version + 1 \
             WHERE project = $3 AND environment = $4 AND key = $5",
        )
        .bind(i64::from(changed.size))
        .bind(&changed.bucket_by)
        .bind(&changed.project)
        .bind(&changed.environment)
        .bind(&changed.key)
        .execute(w.conn())
        .await?;
        Ok(())
    }
}
