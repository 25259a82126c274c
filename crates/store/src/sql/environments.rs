//! Environments of a project.

use async_trait::async_trait;
use sqlx::AnyConnection;

use super::resource::{Announce, Recorded, Resource, Scope};
use super::{Write, rows};
use crate::error::Result;
use crate::types::*;

impl Recorded for Environment {
    const KIND: &'static str = "environment";
    fn id(&self) -> &str {
        &self.key
    }
    fn announce(&self) -> Announce<'_> {
        Announce::Config {
            project: &self.project,
            environment: Some(&self.key),
            compile: false,
        }
    }
}

#[async_trait]
impl Resource for Environment {
    const TABLE: &'static str = "environments";
    type Input = EnvironmentInput;

    fn input_key(input: &EnvironmentInput) -> &str {
        &input.key
    }
    fn path(scope: Scope<'_>, key: &str) -> String {
        match scope {
            Scope::Project(p) => format!("{p}/{key}"),
            _ => key.to_string(),
        }
    }

    async fn load(
        conn: &mut AnyConnection,
        scope: Scope<'_>,
        key: Option<&str>,
    ) -> Result<Vec<Environment>> {
        let project = scope.project()?;
        match key {
            Some(key) => Ok(rows::find_environment(conn, project, key)
                .await?
                .into_iter()
                .collect()),
            None => rows::environments(conn, project).await,
        }
    }

    async fn build(
        _w: &mut Write<'_>,
        scope: Scope<'_>,
        input: EnvironmentInput,
    ) -> Result<Environment> {
        let project = scope.project()?;
        Ok(Environment {
            project: project.to_string(),
            key: input.key,
            name: input.name,
            version: 1,
        })
    }

    fn apply(&mut self, input: EnvironmentInput) -> Result<()> {
        self.name = input.name;
        Ok(())
    }

    async fn insert(w: &mut Write<'_>, new: &Environment) -> Result<()> {
        sqlx::query(
            "INSERT INTO environments (project, key, name, version) VALUES ($1, $2, $3, $4)",
        )
        .bind(&new.project)
        .bind(&new.key)
        .bind(&new.name)
        .bind(new.version)
        .execute(w.conn())
        .await?;
        Ok(())
    }

    async fn save(w: &mut Write<'_>, changed: &Environment) -> Result<()> {
        sqlx::query(
            "UPDATE environments SET name = $1, version = version + 1 \
             WHERE project = $2 AND key = $3",
        )
        .bind(&changed.name)
        .bind(&changed.project)
        .bind(&changed.key)
        .execute(w.conn())
        .await?;
        Ok(())
    }
}
