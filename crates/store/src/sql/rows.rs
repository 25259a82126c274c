//! Reading rows into domain types. Each loader takes a connection, so it
//! serves plain reads and reads inside a write transaction alike.

use std::collections::BTreeMap;

use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;
use switchyard_core::model::{ExperimentStatus, FlagType};

use super::{from_json, parse_time};
use crate::error::{Result, StoreError};
use crate::types::*;

pub(crate) fn text(row: &AnyRow, col: &str) -> Result<String> {
    Ok(row.try_get::<String, _>(col)?)
}

fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(col)?)
}

pub(crate) fn int(row: &AnyRow, col: &str) -> Result<i64> {
    Ok(row.try_get::<i64, _>(col)?)
}

fn basis_points(row: &AnyRow, col: &str) -> Result<u32> {
    u32::try_from(int(row, col)?).map_err(|_| StoreError::Backend(format!("{col} out of range")))
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<T> {
    from_json(&text(row, col)?)
}

/// Enum values are stored as their serde names (`"draft"`, `"boolean"`).
pub(crate) fn enum_name(value: &impl serde::Serialize) -> Result<String> {
    match serde_json::to_value(value)? {
        serde_json::Value::String(s) => Ok(s),
        other => Err(StoreError::Backend(format!("not a unit enum: {other}"))),
    }
}

fn enum_value<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<T> {
    Ok(serde_json::from_value(serde_json::Value::String(text(
        row, col,
    )?))?)
}

pub(crate) async fn project_revision(conn: &mut AnyConnection, project: &str) -> Result<i64> {
    sqlx::query_scalar("SELECT revision FROM projects WHERE key = $1")
        .bind(project)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::not_found("project", project))
}

/// The project's creation time and revision.
pub(crate) async fn project_state(
    conn: &mut AnyConnection,
    project: &str,
) -> Result<(time::OffsetDateTime, u64)> {
    let row = sqlx::query("SELECT created_at, revision FROM projects WHERE key = $1")
        .bind(project)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::not_found("project", project))?;
    let revision = int(&row, "revision")?;
    Ok((
        parse_time(&text(&row, "created_at")?)?,
        u64::try_from(revision).unwrap_or_default(),
    ))
}

fn project(row: &AnyRow) -> Result<Project> {
    Ok(Project {
        key: text(row, "key")?,
        name: text(row, "name")?,
        created_at: parse_time(&text(row, "created_at")?)?,
        version: int(row, "version")?,
    })
}

pub(crate) async fn projects(conn: &mut AnyConnection) -> Result<Vec<Project>> {
    sqlx::query("SELECT key, name, created_at, version FROM projects ORDER BY key")
        .fetch_all(conn)
        .await?
        .iter()
        .map(project)
        .collect()
}

pub(crate) async fn find_project(conn: &mut AnyConnection, key: &str) -> Result<Option<Project>> {
    sqlx::query("SELECT key, name, created_at, version FROM projects WHERE key = $1")
        .bind(key)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(project)
        .transpose()
}

fn environment(row: &AnyRow) -> Result<Environment> {
    Ok(Environment {
        project: text(row, "project")?,
        key: text(row, "key")?,
        name: text(row, "name")?,
        version: int(row, "version")?,
    })
}

pub(crate) async fn environments(
    conn: &mut AnyConnection,
    project: &str,
) -> Result<Vec<Environment>> {
    sqlx::query(
        "SELECT project, key, name, version FROM environments WHERE project = $1 ORDER BY key",
    )
    .bind(project)
    .fetch_all(conn)
    .await?
    .iter()
    .map(environment)
    .collect()
}

pub(crate) async fn find_environment(
    conn: &mut AnyConnection,
    project: &str,
    key: &str,
) -> Result<Option<Environment>> {
    sqlx::query(
        "SELECT project, key, name, version FROM environments WHERE project = $1 AND key = $2",
    )
    .bind(project)
    .bind(key)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(environment)
    .transpose()
}

/// Flags of a project (or only `key`), with their per-environment settings.
pub(crate) async fn flags(
    conn: &mut AnyConnection,
    project: &str,
    key: Option<&str>,
) -> Result<Vec<FlagDefinition>> {
    let rows = sqlx::query(
        "SELECT project, key, name, description, flag_type, variations, tags, archived, version, \
         updated_at, metadata FROM flags WHERE project = $1 AND ($2 IS NULL OR key = $2) ORDER BY key",
    )
    .bind(project)
    .bind(key)
    .fetch_all(&mut *conn)
    .await?;
    let settings = sqlx::query(
        "SELECT flag, environment, settings FROM flag_settings \
         WHERE project = $1 AND ($2 IS NULL OR flag = $2)",
    )
    .bind(project)
    .bind(key)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_flag: BTreeMap<String, BTreeMap<String, FlagEnvironment>> = BTreeMap::new();
    for row in &settings {
        by_flag
            .entry(text(row, "flag")?)
            .or_default()
            .insert(text(row, "environment")?, json(row, "settings")?);
    }
    rows.iter()
        .map(|row| {
            let key = text(row, "key")?;
            Ok(FlagDefinition {
                project: text(row, "project")?,
                name: text(row, "name")?,
                description: text(row, "description")?,
                flag_type: enum_value::<FlagType>(row, "flag_type")?,
                variations: json(row, "variations")?,
                tags: json(row, "tags")?,
                metadata: json(row, "metadata")?,
                archived: int(row, "archived")? != 0,
                environments: by_flag.remove(&key).unwrap_or_default(),
                version: int(row, "version")?,
                updated_at: parse_time(&text(row, "updated_at")?)?,
                key,
            })
        })
        .collect()
}

pub(crate) async fn segments(
    conn: &mut AnyConnection,
    project: &str,
    key: Option<&str>,
) -> Result<Vec<SegmentDefinition>> {
    sqlx::query(
        "SELECT project, key, name, description, included, excluded, rules, version FROM segments \
         WHERE project = $1 AND ($2 IS NULL OR key = $2) ORDER BY key",
    )
    .bind(project)
    .bind(key)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|row| {
        Ok(SegmentDefinition {
            project: text(row, "project")?,
            key: text(row, "key")?,
            name: text(row, "name")?,
            description: text(row, "description")?,
            included: json(row, "included")?,
            excluded: json(row, "excluded")?,
            rules: json(row, "rules")?,
            version: int(row, "version")?,
        })
    })
    .collect()
}

pub(crate) async fn experiments(
    conn: &mut AnyConnection,
    project: &str,
    environment: &str,
    key: Option<&str>,
) -> Result<Vec<ExperimentDefinition>> {
    select_experiments(conn, project, Some(environment), key).await
}

/// The experiments of every environment of a project.
pub(crate) async fn all_experiments(
    conn: &mut AnyConnection,
    project: &str,
) -> Result<Vec<ExperimentDefinition>> {
    select_experiments(conn, project, None, None).await
}

async fn select_experiments(
    conn: &mut AnyConnection,
    project: &str,
    environment: Option<&str>,
    key: Option<&str>,
) -> Result<Vec<ExperimentDefinition>> {
    sqlx::query(
        "SELECT project, environment, key, flag, name, hypothesis, status, variations, coverage, \
         bucket_by, conditions, layer, holdouts, winner, metrics, breakdown_by, guardrails, phase, salt, \
         started_at, stopped_at, version \
         FROM experiments WHERE project = $1 AND ($2 IS NULL OR environment = $2) \
         AND ($3 IS NULL OR key = $3) ORDER BY environment, key",
    )
    .bind(project)
    .bind(environment)
    .bind(key)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|row| {
        Ok(ExperimentDefinition {
            project: text(row, "project")?,
            environment: text(row, "environment")?,
            key: text(row, "key")?,
            flag: text(row, "flag")?,
            name: text(row, "name")?,
            hypothesis: text(row, "hypothesis")?,
            status: enum_value::<ExperimentStatus>(row, "status")?,
            variations: json(row, "variations")?,
            coverage: basis_points(row, "coverage")?,
            bucket_by: text(row, "bucket_by")?,
            conditions: json(row, "conditions")?,
            layer: opt_text(row, "layer")?.map(|s| from_json(&s)).transpose()?,
            holdouts: json(row, "holdouts")?,
            winner: opt_text(row, "winner")?,
            metrics: json(row, "metrics")?,
            breakdown_by: opt_text(row, "breakdown_by")?,
            guardrails: json(row, "guardrails")?,
            phase: u32::try_from(int(row, "phase")?)
                .map_err(|_| StoreError::Backend("experiment phase out of range".into()))?,
            salt: opt_text(row, "salt")?,
            started_at: opt_text(row, "started_at")?
                .map(|s| parse_time(&s))
                .transpose()?,
            stopped_at: opt_text(row, "stopped_at")?
                .map(|s| parse_time(&s))
                .transpose()?,
            version: int(row, "version")?,
        })
    })
    .collect()
}

pub(crate) async fn holdouts(
    conn: &mut AnyConnection,
    project: &str,
    environment: &str,
    key: Option<&str>,
) -> Result<Vec<HoldoutDefinition>> {
    sqlx::query(
        "SELECT project, environment, key, size, bucket_by, version FROM holdouts \
         WHERE project = $1 AND environment = $2 AND ($3 IS NULL OR key = $3) ORDER BY key",
    )
    .bind(project)
    .bind(environment)
    .bind(key)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|row| {
        Ok(HoldoutDefinition {
            project: text(row, "project")?,
            environment: text(row, "environment")?,
            key: text(row, "key")?,
            size: basis_points(row, "size")?,
            bucket_by: text(row, "bucket_by")?,
            version: int(row, "version")?,
        })
    })
    .collect()
}

pub(crate) fn api_key(row: &AnyRow) -> Result<ApiKey> {
    let kind = match text(row, "kind")?.as_str() {
        "server" => ApiKeyKind::Server,
        "client" => ApiKeyKind::Client,
        _ => ApiKeyKind::Admin(enum_value::<Role>(row, "role")?),
    };
    Ok(ApiKey {
        id: text(row, "id")?,
        name: text(row, "name")?,
        kind,
        project: opt_text(row, "project")?,
        environment: opt_text(row, "environment")?,
        created_at: parse_time(&text(row, "created_at")?)?,
        revoked_at: opt_text(row, "revoked_at")?
            .map(|s| parse_time(&s))
            .transpose()?,
        prefix: text(row, "prefix")?,
    })
}

pub(crate) fn audit_entry(row: &AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: int(row, "id")?,
        at: parse_time(&text(row, "at")?)?,
        actor: text(row, "actor")?,
        action: text(row, "action")?,
        resource_kind: text(row, "resource_kind")?,
        project: opt_text(row, "project")?,
        resource_key: text(row, "resource_key")?,
        before: opt_text(row, "before_value")?
            .map(|s| from_json(&s))
            .transpose()?,
        after: opt_text(row, "after_value")?
            .map(|s| from_json(&s))
            .transpose()?,
    })
}
