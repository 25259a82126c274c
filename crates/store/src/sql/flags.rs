//! Flags, with their settings in every environment of the project.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::AnyConnection;

use super::resource::{Announce, Recorded, Resource, Scope};
use super::rows::{self, enum_name};
use super::{Write, fmt_time, now, to_json};
use crate::error::{Result, StoreError};
use crate::types::*;

impl Recorded for FlagDefinition {
    const KIND: &'static str = "flag";
    fn id(&self) -> &str {
        &self.key
    }
    fn announce(&self) -> Announce<'_> {
        Announce::Config {
            project: &self.project,
            environment: None,
            compile: true,
        }
    }
}

#[async_trait]
impl Resource for FlagDefinition {
    const TABLE: &'static str = "flags";
    type Input = FlagInput;

    fn input_key(input: &FlagInput) -> &str {
        &input.key
    }

    async fn load(
        conn: &mut AnyConnection,
        scope: Scope<'_>,
        key: Option<&str>,
    ) -> Result<Vec<FlagDefinition>> {
        rows::flags(conn, scope.project()?, key).await
    }

    async fn build(
        w: &mut Write<'_>,
        scope: Scope<'_>,
        input: FlagInput,
    ) -> Result<FlagDefinition> {
        let project = scope.project()?;
        // Every environment gets explicit settings: the given ones, or off.
        let mut environments = input.environments;
        for env in rows::environments(w.conn(), project).await? {
            environments
                .entry(env.key)
                .or_insert_with(|| FlagEnvironment::off(&input.flag_type, &input.variations));
        }
        Ok(FlagDefinition {
            project: project.to_string(),
            key: input.key,
            name: input.name,
            description: input.description,
            flag_type: input.flag_type,
            variations: input.variations,
            tags: input.tags,
            metadata: input.metadata,
            archived: input.archived,
            environments,
            version: 1,
            updated_at: now(),
        })
    }

    /// Environments not named in `input` keep their settings.
    fn apply(&mut self, input: FlagInput) -> Result<()> {
        self.name = input.name;
        self.description = input.description;
        self.flag_type = input.flag_type;
        self.variations = input.variations;
        self.tags = input.tags;
        self.metadata = input.metadata;
        self.archived = input.archived;
        self.environments.extend(input.environments);
        self.updated_at = now();
        Ok(())
    }

    async fn insert(w: &mut Write<'_>, new: &FlagDefinition) -> Result<()> {
        sqlx::query(
            "INSERT INTO flags (project, key, name, description, flag_type, variations, tags, \
             archived, version, updated_at, metadata) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&new.project)
        .bind(&new.key)
        .bind(&new.name)
        .bind(&new.description)
        .bind(enum_name(&new.flag_type)?)
        .bind(to_json(&new.variations)?)
        .bind(to_json(&new.tags)?)
        .bind(i64::from(new.archived))
        .bind(new.version)
        .bind(fmt_time(new.updated_at))
        .bind(to_json(&new.metadata)?)
        .execute(w.conn())
        .await?;
        write_settings(w, new).await
    }

    async fn save(w: &mut Write<'_>, changed: &FlagDefinition) -> Result<()> {
        sqlx::query(
            "UPDATE flags SET name = $1, description = $2, flag_type = $3, variations = $4, \
             tags = $5, archived = $6, version = version + 1, updated_at = $7, metadata = $8 \
             WHERE project = $9 AND key = $10",
        )
        .bind(&changed.name)
        .bind(&changed.description)
        .bind(enum_name(&changed.flag_type)?)
        .bind(to_json(&changed.variations)?)
        .bind(to_json(&changed.tags)?)
        .bind(i64::from(changed.archived))
        .bind(fmt_time(changed.updated_at))
        .bind(to_json(&changed.metadata)?)
        .bind(&changed.project)
        .bind(&changed.key)
        .execute(w.conn())
        .await?;
        write_settings(w, changed).await
    }
}

/// Writes the flag's per-environment settings; every environment named
/// must exist in the project.
async fn write_settings(w: &mut Write<'_>, flag: &FlagDefinition) -> Result<()> {
    let known: Vec<String> = rows::environments(w.conn(), &flag.project)
        .await?
        .into_iter()
        .map(|e| e.key)
        .collect();
    let settings: &BTreeMap<String, FlagEnvironment> = &flag.environments;
    if let Some(unknown) = settings.keys().find(|e| !known.contains(e)) {
        return Err(StoreError::Invalid(format!(
            "flag {:?}: unknown environment {unknown:?}",
            flag.key
        )));
    }
    sqlx::query("DELETE FROM flag_settings WHERE project = $1 AND flag = $2")
        .bind(&flag.project)
        .bind(&flag.key)
        .execute(w.conn())
        .await?;
    for (environment, s) in settings {
        sqlx::query(
            "INSERT INTO flag_settings (project, flag, environment, settings) VALUES ($1, $2, $3, $4)",
        )
        .bind(&flag.project)
        .bind(&flag.key)
        .bind(environment)
        .bind(to_json(s)?)
        .execute(w.conn())
        .await?;
    }
    Ok(())
}
