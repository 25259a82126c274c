//! Flags and segments.

use std::collections::BTreeMap;

use super::documents::validate;
use super::projects::check_key;
use super::rows::{self, enum_name};
use super::{SqlStore, Write, check_version, fmt_time, now, to_json};
use crate::error::{Result, StoreError};
use crate::types::*;

async fn require_project(w: &mut Write<'_>, project: &str) -> Result<()> {
    match rows::find_project(w.conn(), project).await? {
        Some(_) => Ok(()),
        None => Err(StoreError::not_found("project", project)),
    }
}

async fn find_flag(w: &mut Write<'_>, project: &str, key: &str) -> Result<Option<FlagDefinition>> {
    Ok(rows::flags(w.conn(), project, Some(key)).await?.pop())
}

async fn find_segment(
    w: &mut Write<'_>,
    project: &str,
    key: &str,
) -> Result<Option<SegmentDefinition>> {
    Ok(rows::segments(w.conn(), project, Some(key)).await?.pop())
}

/// Writes the flag's per-environment settings; every environment named
/// must exist in the project.
async fn write_settings(
    w: &mut Write<'_>,
    project: &str,
    flag: &str,
    settings: &BTreeMap<String, FlagEnvironment>,
) -> Result<()> {
    for (environment, s) in settings {
        if rows::find_environment(w.conn(), project, environment)
            .await?
            .is_none()
        {
            return Err(StoreError::Invalid(format!(
                "flag {flag:?}: unknown environment {environment:?}"
            )));
        }
        sqlx::query(
            "DELETE FROM flag_settings WHERE project = $1 AND flag = $2 AND environment = $3",
        )
        .bind(project)
        .bind(flag)
        .bind(environment)
        .execute(w.conn())
        .await?;
        sqlx::query(
            "INSERT INTO flag_settings (project, flag, environment, settings) VALUES ($1, $2, $3, $4)",
        )
        .bind(project)
        .bind(flag)
        .bind(environment)
        .bind(to_json(s)?)
        .execute(w.conn())
        .await?;
    }
    Ok(())
}

impl SqlStore {
    pub(crate) async fn list_flags_impl(&self, project: &str) -> Result<Vec<FlagDefinition>> {
        let mut conn = self.read().await?;
        if rows::find_project(&mut conn, project).await?.is_none() {
            return Err(StoreError::not_found("project", project));
        }
        rows::flags(&mut conn, project, None).await
    }

    pub(crate) async fn get_flag_impl(&self, project: &str, key: &str) -> Result<FlagDefinition> {
        rows::flags(&mut *self.read().await?, project, Some(key))
            .await?
            .pop()
            .ok_or_else(|| StoreError::not_found("flag", key))
    }

    pub(crate) async fn create_flag_impl(
        &self,
        actor: &str,
        project: &str,
        input: FlagInput,
    ) -> Result<FlagDefinition> {
        check_key("flag", &input.key)?;
        let mut w = self.write().await?;
        require_project(&mut w, project).await?;
        if find_flag(&mut w, project, &input.key).await?.is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "flag",
                key: input.key,
            });
        }
        // Every environment gets explicit settings: the given ones, or off.
        let mut settings = input.environments.clone();
        for env in rows::environments(w.conn(), project).await? {
            settings
                .entry(env.key)
                .or_insert_with(|| FlagEnvironment::off(&input.flag_type, &input.variations));
        }
        sqlx::query(
            "INSERT INTO flags (project, key, name, description, flag_type, variations, tags, \
             archived, version, updated_at, metadata) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10)",
        )
        .bind(project)
        .bind(&input.key)
        .bind(&input.name)
        .bind(&input.description)
        .bind(enum_name(&input.flag_type)?)
        .bind(to_json(&input.variations)?)
        .bind(to_json(&input.tags)?)
        .bind(i64::from(input.archived))
        .bind(fmt_time(now()))
        .bind(to_json(&input.metadata)?)
        .execute(w.conn())
        .await?;
        write_settings(&mut w, project, &input.key, &settings).await?;
        validate(w.conn(), project, None).await?;
        let after = find_flag(&mut w, project, &input.key)
            .await?
            .ok_or_else(|| StoreError::not_found("flag", &input.key))?;
        w.audit(
            actor,
            "create",
            "flag",
            Some(project),
            &input.key,
            None::<&()>,
            Some(&after),
        )
        .await?;
        w.touch(project, None).await?;
        w.commit().await?;
        Ok(after)
    }

    pub(crate) async fn update_flag_impl(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
        input: FlagInput,
    ) -> Result<FlagDefinition> {
        if input.key != key {
            return Err(StoreError::Invalid(format!(
                "flag key {:?} cannot change to {:?}",
                key, input.key
            )));
        }
        let mut w = self.write().await?;
        let before = find_flag(&mut w, project, key)
            .await?
            .ok_or_else(|| StoreError::not_found("flag", key))?;
        check_version("flag", key, before.version, expected)?;
        sqlx::query(
            "UPDATE flags SET name = $1, description = $2, flag_type = $3, variations = $4, \
             tags = $5, archived = $6, version = version + 1, updated_at = $7, metadata = $8 \
             WHERE project = $9 AND key = $10",
        )
        .bind(&input.name)
        .bind(&input.description)
        .bind(enum_name(&input.flag_type)?)
        .bind(to_json(&input.variations)?)
        .bind(to_json(&input.tags)?)
        .bind(i64::from(input.archived))
        .bind(fmt_time(now()))
        .bind(to_json(&input.metadata)?)
        .bind(project)
        .bind(key)
        .execute(w.conn())
        .await?;
        write_settings(&mut w, project, key, &input.environments).await?;
        validate(w.conn(), project, None).await?;
        let after = find_flag(&mut w, project, key)
            .await?
            .ok_or_else(|| StoreError::not_found("flag", key))?;
        w.audit(
            actor,
            "update",
            "flag",
            Some(project),
            key,
            Some(&before),
            Some(&after),
        )
        .await?;
        w.touch(project, None).await?;
        w.commit().await?;
        Ok(after)
    }

    pub(crate) async fn delete_flag_impl(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
    ) -> Result<()> {
        let mut w = self.write().await?;
        let before = find_flag(&mut w, project, key)
            .await?
            .ok_or_else(|| StoreError::not_found("flag", key))?;
        check_version("flag", key, before.version, expected)?;
        sqlx::query("DELETE FROM flags WHERE project = $1 AND key = $2")
            .bind(project)
            .bind(key)
            .execute(w.conn())
            .await?;
        // Another flag's prerequisite or an experiment may still name it.
        validate(w.conn(), project, None).await?;
        w.audit(
            actor,
            "delete",
            "flag",
            Some(project),
            key,
            Some(&before),
            None::<&()>,
        )
        .await?;
        w.touch(project, None).await?;
        w.commit().await
    }

    pub(crate) async fn list_segments_impl(&self, project: &str) -> Result<Vec<SegmentDefinition>> {
        let mut conn = self.read().await?;
        if rows::find_project(&mut conn, project).await?.is_none() {
            return Err(StoreError::not_found("project", project));
        }
        rows::segments(&mut conn, project, None).await
    }

    pub(crate) async fn get_segment_impl(
        &self,
        project: &str,
        key: &str,
    ) -> Result<SegmentDefinition> {
        rows::segments(&mut *self.read().await?, project, Some(key))
            .await?
            .pop()
            .ok_or_else(|| StoreError::not_found("segment", key))
    }

    pub(crate) async fn create_segment_impl(
        &self,
        actor: &str,
        project: &str,
        input: SegmentInput,
    ) -> Result<SegmentDefinition> {
        check_key("segment", &input.key)?;
        let mut w = self.write().await?;
        require_project(&mut w, project).await?;
        if find_segment(&mut w, project, &input.key).await?.is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "segment",
                key: input.key,
            });
        }
        sqlx::query(
            "INSERT INTO segments (project, key, name, description, included, excluded, rules, \
             version) VALUES ($1, $2, $3, $4, $5, $6, $7, 1)",
        )
        .bind(project)
        .bind(&input.key)
        .bind(&input.name)
        .bind(&input.description)
        .bind(to_json(&input.included)?)
        .bind(to_json(&input.excluded)?)
        .bind(to_json(&input.rules)?)
        .execute(w.conn())
        .await?;
        validate(w.conn(), project, None).await?;
        let after = find_segment(&mut w, project, &input.key)
            .await?
            .ok_or_else(|| StoreError::not_found("segment", &input.key))?;
        w.audit(
            actor,
            "create",
            "segment",
            Some(project),
            &input.key,
            None::<&()>,
            Some(&after),
        )
        .await?;
        w.touch(project, None).await?;
        w.commit().await?;
        Ok(after)
    }

    pub(crate) async fn update_segment_impl(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
        input: SegmentInput,
    ) -> Result<SegmentDefinition> {
        if input.key != key {
            return Err(StoreError::Invalid(format!(
                "segment key {:?} cannot change to {:?}",
                key, input.key
            )));
        }
        let mut w = self.write().await?;
        let before = find_segment(&mut w, project, key)
            .await?
            .ok_or_else(|| StoreError::not_found("segment", key))?;
        check_version("segment", key, before.version, expected)?;
        sqlx::query(
            "UPDATE segments SET name = $1, description = $2, included = $3, excluded = $4, \
             rules = $5, version = version + 1 WHERE project = $6 AND key = $7",
        )
        .bind(&input.name)
        .bind(&input.description)
        .bind(to_json(&input.included)?)
        .bind(to_json(&input.excluded)?)
        .bind(to_json(&input.rules)?)
        .bind(project)
        .bind(key)
        .execute(w.conn())
        .await?;
        validate(w.conn(), project, None).await?;
        let after = find_segment(&mut w, project, key)
            .await?
            .ok_or_else(|| StoreError::not_found("segment", key))?;
        w.audit(
            actor,
            "update",
            "segment",
            Some(project),
            key,
            Some(&before),
            Some(&after),
        )
        .await?;
        w.touch(project, None).await?;
        w.commit().await?;
        Ok(after)
    }

    pub(crate) async fn delete_segment_impl(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
    ) -> Result<()> {
        let mut w = self.write().await?;
        let before = find_segment(&mut w, project, key)
            .await?
            .ok_or_else(|| StoreError::not_found("segment", key))?;
        check_version("segment", key, before.version, expected)?;
        sqlx::query("DELETE FROM segments WHERE project = $1 AND key = $2")
            .bind(project)
            .bind(key)
            .execute(w.conn())
            .await?;
        validate(w.conn(), project, None).await?;
        w.audit(
            actor,
            "delete",
            "segment",
            Some(project),
            key,
            Some(&before),
            None::<&()>,
        )
        .await?;
        w.touch(project, None).await?;
        w.commit().await
    }
}
