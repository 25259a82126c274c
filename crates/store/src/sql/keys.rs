//! API keys and the audit log.

use sqlx::AnyConnection;

use super::resource::{Announce, Recorded, check_text, storable};
use super::{SqlStore, fmt_time, now, rows};
use crate::error::{Result, StoreError};
use crate::secret;
use crate::types::*;

const KEY_COLUMNS: &str =
    "id, name, kind, role, project, environment, prefix, created_at, revoked_at";

/// Keys are never edited, only created and revoked: audited and announced
/// like the other resources, but not versioned.
impl Recorded for ApiKey {
    const KIND: &'static str = "api_key";
    fn id(&self) -> &str {
        &self.id
    }
    fn announce(&self) -> Announce<'_> {
        Announce::ApiKeys {
            project: self.project.as_deref(),
        }
    }
}

impl SqlStore {
    pub(crate) async fn create_api_key_impl(
        &self,
        actor: &str,
        input: ApiKeyInput,
    ) -> Result<CreatedApiKey> {
        check_text(&input)?;
        let mut w = self.write().await?;
        match (input.kind, &input.project, &input.environment) {
            (ApiKeyKind::Admin(_), _, None) => {}
            (ApiKeyKind::Admin(_), _, Some(_)) => {
                return Err(StoreError::Invalid(
                    "an admin key is not bound to an environment".into(),
                ));
            }
            (_, Some(project), Some(environment)) => {
                if rows::find_environment(w.conn(), project, environment)
                    .await?
                    .is_none()
                {
                    return Err(StoreError::Invalid(format!(
                        "unknown environment {project}/{environment}"
                    )));
                }
            }
            _ => {
                return Err(StoreError::Invalid(
                    "server and client keys need a project and an environment".into(),
                ));
            }
        }
        if let Some(project) = &input.project
            && rows::find_project(w.conn(), project).await?.is_none()
        {
            return Err(StoreError::Invalid(format!("unknown project {project:?}")));
        }
        let secret = secret::generate(input.kind)?;
        let key = ApiKey {
            id: format!("key_{}", secret::random_base62(16)?),
            name: input.name,
            kind: input.kind,
            project: input.project,
            environment: input.environment,
            created_at: now(),
            revoked_at: None,
            prefix: secret::prefix(&secret),
        };
        let role = match key.kind {
            ApiKeyKind::Admin(role) => Some(rows::enum_name(&role)?),
            _ => None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, name, kind, role, project, environment, secret_hash, prefix, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(secret::kind_tag(key.kind))
        .bind(role)
        .bind(key.project.as_deref())
        .bind(key.environment.as_deref())
        .bind(secret::hash(&secret))
        .bind(&key.prefix)
        .bind(fmt_time(key.created_at))
        .execute(w.conn())
        .await?;
        w.finish(actor, "create", None, Some(&key)).await?;
        Ok(CreatedApiKey { key, secret })
    }

    pub(crate) async fn list_api_keys_impl(&self) -> Result<Vec<ApiKey>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *self.read().await?)
            .await?
            .iter()
            .map(rows::api_key)
            .collect()
    }

    pub(crate) async fn get_api_key_impl(&self, id: &str) -> Result<ApiKey> {
        find_key(&mut *self.read().await?, id).await
    }

    pub(crate) async fn revoke_api_key_impl(&self, actor: &str, id: &str) -> Result<ApiKey> {
        let mut w = self.write().await?;
        let before = find_key(w.conn(), id).await?;
        if before.revoked_at.is_some() {
            return Ok(before);
        }
        let after = ApiKey {
            revoked_at: Some(now()),
            ..before.clone()
        };
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2")
            .bind(after.revoked_at.map(fmt_time))
            .bind(id)
            .execute(w.conn())
            .await?;
        w.finish(actor, "revoke", Some(&before), Some(&after))
            .await?;
        Ok(after)
    }

    pub(crate) async fn authenticate_impl(&self, secret: &str) -> Result<Option<ApiKey>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(secret::hash(secret))
            .fetch_optional(&mut *self.read().await?)
            .await?
            .as_ref()
            .map(rows::api_key)
            .transpose()
    }

    pub(crate) async fn live_api_keys_impl(&self) -> Result<Vec<LiveApiKey>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS}, secret_hash FROM api_keys WHERE revoked_at IS NULL ORDER BY id"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *self.read().await?)
            .await?
            .iter()
            .map(|row| {
                Ok(LiveApiKey {
                    key: rows::api_key(row)?,
                    secret_hash: sqlx::Row::try_get(row, "secret_hash")?,
                })
            })
            .collect()
    }

    pub(crate) async fn list_audit_impl(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>> {
        let limit = i64::from(filter.limit.unwrap_or(100).clamp(1, 1000));
        let texts = [&filter.project, &filter.resource_kind, &filter.resource_key];
        if !texts.iter().all(|t| t.as_deref().is_none_or(storable)) {
            return Ok(Vec::new());
        }
        sqlx::query(
            "SELECT id, at, actor, action, resource_kind, project, resource_key, before_value, \
             after_value FROM audit_log \
             WHERE ($1 IS NULL OR project = $1) AND ($2 IS NULL OR resource_kind = $2) \
             AND ($3 IS NULL OR resource_key = $3) AND ($4 IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5",
        )
        .bind(filter.project)
        .bind(filter.resource_kind)
        .bind(filter.resource_key)
        .bind(filter.before_id)
        .bind(limit)
        .fetch_all(&mut *self.read().await?)
        .await?
        .iter()
        .map(rows::audit_entry)
        .collect()
    }
}

async fn find_key(conn: &mut AnyConnection, id: &str) -> Result<ApiKey> {
    if !storable(id) {
        return Err(StoreError::not_found("api_key", id));
    }
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(rows::api_key)
        .transpose()?
        .ok_or_else(|| StoreError::not_found("api_key", id))
}
