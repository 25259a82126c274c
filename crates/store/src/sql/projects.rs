//! The organisation's name, and projects.

use async_trait::async_trait;
use sqlx::AnyConnection;

use super::resource::{Announce, Recorded, Resource, Scope, check_text};
use super::{SqlStore, Write, fmt_time, now, rows};
use crate::error::Result;
use crate::types::*;

impl Recorded for Project {
    const KIND: &'static str = "project";
    fn id(&self) -> &str {
        &self.key
    }
    fn announce(&self) -> Announce<'_> {
        Announce::Config {
            project: &self.key,
            environment: None,
            compile: false,
        }
    }
}

#[async_trait]
impl Resource for Project {
    const TABLE: &'static str = "projects";
    type Input = ProjectInput;

    fn input_key(input: &ProjectInput) -> &str {
        &input.key
    }

    async fn load(
        conn: &mut AnyConnection,
        _scope: Scope<'_>,
        key: Option<&str>,
    ) -> Result<Vec<Project>> {
        match key {
            Some(key) => Ok(rows::find_project(conn, key).await?.into_iter().collect()),
            None => rows::projects(conn).await,
        }
    }

    async fn build(_w: &mut Write<'_>, _scope: Scope<'_>, input: ProjectInput) -> Result<Project> {
        Ok(Project {
            key: input.key,
            name: input.name,
            created_at: now(),
            version: 1,
        })
    }

    fn apply(&mut self, input: ProjectInput) -> Result<()> {
        self.name = input.name;
        Ok(())
    }

    async fn insert(w: &mut Write<'_>, new: &Project) -> Result<()> {
        let revision = w.revision;
        sqlx::query(
            "INSERT INTO projects (key, name, created_at, version, revision) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&new.key)
        .bind(&new.name)
        .bind(fmt_time(new.created_at))
        .bind(new.version)
        .bind(revision)
        .execute(w.conn())
        .await?;
        Ok(())
    }

    async fn save(w: &mut Write<'_>, changed: &Project) -> Result<()> {
        sqlx::query("UPDATE projects SET name = $1, version = version + 1 WHERE key = $2")
            .bind(&changed.name)
            .bind(&changed.key)
            .execute(w.conn())
            .await?;
        Ok(())
    }
}

impl SqlStore {
    pub(crate) async fn organisation_impl(&self) -> Result<Option<String>> {
        let mut conn = self.read().await?;
        organisation(&mut conn).await
    }

    pub(crate) async fn set_organisation_impl(&self, actor: &str, name: &str) -> Result<()> {
        check_text(&std::collections::BTreeMap::from([("name", name)]))?;
        let mut w = self.write().await?;
        let before = organisation(w.conn()).await?;
        sqlx::query("DELETE FROM settings WHERE key = 'organisation'")
            .execute(w.conn())
            .await?;
        sqlx::query("INSERT INTO settings (key, value) VALUES ('organisation', $1)")
            .bind(name)
            .execute(w.conn())
            .await?;
        w.audit(
            actor,
            "update",
            "organisation",
            None,
            "organisation",
            before.as_ref(),
            Some(&name),
        )
        .await?;
        w.commit().await
    }
}

async fn organisation(conn: &mut AnyConnection) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'organisation'")
            .fetch_optional(conn)
            .await?,
    )
}
