//! Organisation, projects and environments.

use super::{SqlStore, check_version, fmt_time, now, rows};
use crate::error::{Result, StoreError};
use crate::types::*;

/// Keys are short, URL-safe identifiers: `[a-z0-9][a-z0-9_.-]{0,63}`.
pub(crate) fn check_key(kind: &str, key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'_' | b'-' | b'.'))
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{kind} key {key:?} must be 1 to 64 characters of a-z, 0-9, '_', '-', '.', starting with a letter or digit"
        )))
    }
}

impl SqlStore {
    pub(crate) async fn organisation_impl(&self) -> Result<Option<String>> {
        let mut conn = self.read().await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'organisation'")
                .fetch_optional(&mut *conn)
                .await?,
        )
    }

    pub(crate) async fn set_organisation_impl(&self, actor: &str, name: &str) -> Result<()> {
        let mut w = self.write().await?;
        let before = self.organisation_in(&mut w).await?;
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

    async fn organisation_in(&self, w: &mut super::Write<'_>) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'organisation'")
                .fetch_optional(w.conn())
                .await?,
        )
    }

    pub(crate) async fn list_projects_impl(&self) -> Result<Vec<Project>> {
        rows::projects(&mut *self.read().await?).await
    }

    pub(crate) async fn get_project_impl(&self, key: &str) -> Result<Project> {
        rows::find_project(&mut *self.read().await?, key)
            .await?
            .ok_or_else(|| StoreError::not_found("project", key))
    }

    pub(crate) async fn create_project_impl(
        &self,
        actor: &str,
        input: ProjectInput,
    ) -> Result<Project> {
        check_key("project", &input.key)?;
        let mut w = self.write().await?;
        if rows::find_project(w.conn(), &input.key).await?.is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "project",
                key: input.key,
            });
        }
        sqlx::query(
            "INSERT INTO projects (key, name, created_at, version, revision) \
             VALUES ($1, $2, $3, 1, $4)",
        )
        .bind(&input.key)
        .bind(&input.name)
        .bind(fmt_time(now()))
        .bind(w.revision)
        .execute(w.conn())
        .await?;
        let created = rows::find_project(w.conn(), &input.key)
            .await?
            .ok_or_else(|| StoreError::not_found("project", &input.key))?;
        w.audit(
            actor,
            "create",
            "project",
            Some(&input.key),
            &input.key,
            None::<&()>,
            Some(&created),
        )
        .await?;
        w.touch(&input.key, None).await?;
        w.commit().await?;
        Ok(created)
    }

    pub(crate) async fn update_project_impl(
        &self,
        actor: &str,
        key: &str,
        expected: Version,
        name: &str,
    ) -> Result<Project> {
        let mut w = self.write().await?;
        let before = rows::find_project(w.conn(), key)
            .await?
            .ok_or_else(|| StoreError::not_found("project", key))?;
        check_version("project", key, before.version, expected)?;
        sqlx::query("UPDATE projects SET name = $1, version = version + 1 WHERE key = $2")
            .bind(name)
            .bind(key)
            .execute(w.conn())
            .await?;
        let after = rows::find_project(w.conn(), key)
            .await?
            .ok_or_else(|| StoreError::not_found("project", key))?;
        w.audit(
            actor,
            "update",
            "project",
            Some(key),
            key,
            Some(&before),
            Some(&after),
        )
        .await?;
        w.touch(key, None).await?;
        w.commit().await?;
        Ok(after)
    }

    pub(crate) async fn delete_project_impl(
        &self,
        actor: &str,
        key: &str,
        expected: Version,
    ) -> Result<()> {
        let mut w = self.write().await?;
        let before = rows::find_project(w.conn(), key)
            .await?
            .ok_or_else(|| StoreError::not_found("project", key))?;
        check_version("project", key, before.version, expected)?;
        sqlx::query("DELETE FROM projects WHERE key = $1")
            .bind(key)
            .execute(w.conn())
            .await?;
        w.audit(
            actor,
            "delete",
            "project",
            Some(key),
            key,
            Some(&before),
            None::<&()>,
        )
        .await?;
        w.touch(key, None).await?;
        w.commit().await
    }

    pub(crate) async fn list_environments_impl(&self, project: &str) -> Result<Vec<Environment>> {
        let mut conn = self.read().await?;
        if rows::find_project(&mut conn, project).await?.is_none() {
            return Err(StoreError::not_found("project", project));
        }
        rows::environments(&mut conn, project).await
    }

    pub(crate) async fn get_environment_impl(
        &self,
        project: &str,
        key: &str,
    ) -> Result<Environment> {
        rows::find_environment(&mut *self.read().await?, project, key)
            .await?
            .ok_or_else(|| StoreError::not_found("environment", format!("{project}/{key}")))
    }

    pub(crate) async fn create_environment_impl(
        &self,
        actor: &str,
        project: &str,
        input: EnvironmentInput,
    ) -> Result<Environment> {
        check_key("environment", &input.key)?;
        let mut w = self.write().await?;
        if rows::find_project(w.conn(), project).await?.is_none() {
            return Err(StoreError::not_found("project", project));
        }
        if rows::find_environment(w.conn(), project, &input.key)
            .await?
            .is_some()
        {
            return Err(StoreError::AlreadyExists {
                kind: "environment",
                key: format!("{project}/{}", input.key),
            });
        }
        sqlx::query(
            "INSERT INTO environments (project, key, name, version) VALUES ($1, $2, $3, 1)",
        )
        .bind(project)
        .bind(&input.key)
        .bind(&input.name)
        .execute(w.conn())
        .await?;
        let created = Environment {
            project: project.to_string(),
            key: input.key,
            name: input.name,
            version: 1,
        };
        w.audit(
            actor,
            "create",
            "environment",
            Some(project),
            &created.key,
            None::<&()>,
            Some(&created),
        )
        .await?;
        w.touch(project, Some(&created.key)).await?;
        w.commit().await?;
        Ok(created)
    }

    pub(crate) async fn update_environment_impl(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
        name: &str,
    ) -> Result<Environment> {
        let mut w = self.write().await?;
        let before = rows::find_environment(w.conn(), project, key)
            .await?
            .ok_or_else(|| StoreError::not_found("environment", format!("{project}/{key}")))?;
        check_version("environment", key, before.version, expected)?;
        sqlx::query(
            "UPDATE environments SET name = $1, version = version + 1 WHERE project = $2 AND key = $3",
        )
        .bind(name)
        .bind(project)
        .bind(key)
        .execute(w.conn())
        .await?;
        let after = Environment {
            name: name.to_string(),
            version: before.version + 1,
            ..before.clone()
        };
        w.audit(
            actor,
            "update",
            "environment",
            Some(project),
            key,
            Some(&before),
            Some(&after),
        )
        .await?;
        w.touch(project, Some(key)).await?;
        w.commit().await?;
        Ok(after)
    }

    pub(crate) async fn delete_environment_impl(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
    ) -> Result<()> {
        let mut w = self.write().await?;
        let before = rows::find_environment(w.conn(), project, key)
            .await?
            .ok_or_else(|| StoreError::not_found("environment", format!("{project}/{key}")))?;
        check_version("environment", key, before.version, expected)?;
        sqlx::query("DELETE FROM environments WHERE project = $1 AND key = $2")
            .bind(project)
            .bind(key)
            .execute(w.conn())
            .await?;
        w.audit(
            actor,
            "delete",
            "environment",
            Some(project),
            key,
            Some(&before),
            None::<&()>,
        )
        .await?;
        w.touch(project, Some(key)).await?;
        w.commit().await
    }
}
