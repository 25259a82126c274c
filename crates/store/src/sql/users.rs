//! Web UI users and their browser sessions.
//!
//! Creating and disabling a user is audited (kind `user`, keyed by the
//! email; the audit entry never holds the password hash). Sessions are
//! not configuration: they are written outside the revision counter and
//! not audited; only the SHA-256 of a session id is stored.

use sqlx::any::AnyRow;
use time::OffsetDateTime;

use super::resource::storable;
use super::{SqlStore, fmt_time, now, parse_time, rows};
use crate::error::{Result, StoreError};
use crate::types::*;
use crate::{password, secret};

const USER_COLUMNS: &str = "id, email, role, project, created_at, disabled_at";
/// Longest email accepted (RFC 5321's path limit).
const MAX_EMAIL: usize = 254;

/// The stored form of an email: trimmed and lowercase. Fails with
/// `InvalidField` (`email`) unless it looks like one address.
pub fn normalise_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let ok = email.len() <= MAX_EMAIL
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if ok {
        Ok(email)
    } else {
        Err(StoreError::InvalidField {
            field: "email".into(),
            message: format!(
                "an email address is local@domain, at most {MAX_EMAIL} bytes, without spaces"
            ),
        })
    }
}

fn user(row: &AnyRow) -> Result<User> {
    Ok(User {
        id: rows::text(row, "id")?,
        email: rows::text(row, "email")?,
        role: serde_json::from_value(serde_json::Value::String(rows::text(row, "role")?))?,
        project: sqlx::Row::try_get::<Option<String>, _>(row, "project")?,
        created_at: parse_time(&rows::text(row, "created_at")?)?,
        disabled_at: sqlx::Row::try_get::<Option<String>, _>(row, "disabled_at")?
            .map(|s| parse_time(&s))
            .transpose()?,
    })
}

impl SqlStore {
    pub(crate) async fn create_user_impl(&self, actor: &str, input: UserInput) -> Result<User> {
        let email = normalise_email(&input.email)?;
        if input.project.as_deref().is_some_and(|p| !storable(p)) {
            return Err(StoreError::Invalid("unknown project".into()));
        }
        // Hashed before the write transaction: it takes a while.
        let hash = password::hash(&input.password).await?;
        let mut w = self.write().await?;
        if let Some(project) = &input.project
            && rows::find_project(w.conn(), project).await?.is_none()
        {
            return Err(StoreError::Invalid(format!("unknown project {project:?}")));
        }
        let taken: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
            .bind(&email)
            .fetch_optional(w.conn())
            .await?;
        if taken.is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "user",
                key: email,
            });
        }
        let user = User {
            id: format!("usr_{}", secret::random_base62(16)?),
            email,
            role: input.role,
            project: input.project,
            created_at: now(),
            disabled_at: None,
        };
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, role, project, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(hash)
        .bind(rows::enum_name(&user.role)?)
        .bind(user.project.as_deref())
        .bind(fmt_time(user.created_at))
        .execute(w.conn())
        .await?;
        w.audit(
            actor,
            "create",
            "user",
            user.project.as_deref(),
            &user.email,
            None::<&User>,
            Some(&user),
        )
        .await?;
        w.commit().await?;
        Ok(user)
    }

    pub(crate) async fn list_users_impl(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY email");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *self.read().await?)
            .await?
            .iter()
            .map(user)
            .collect()
    }

    pub(crate) async fn disable_user_impl(&self, actor: &str, email: &str) -> Result<User> {
        let Ok(email) = normalise_email(email) else {
            return Err(StoreError::not_found("user", email));
        };
        let mut w = self.write().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
        let before = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&email)
            .fetch_optional(w.conn())
            .await?
            .as_ref()
            .map(user)
            .transpose()?
            .ok_or_else(|| StoreError::not_found("user", email.clone()))?;
        if before.disabled_at.is_some() {
            return Ok(before);
        }
        let after = User {
            disabled_at: Some(now()),
            ..before.clone()
        };
        sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(after.disabled_at.map(fmt_time))
            .bind(&after.id)
            .execute(w.conn())
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(&after.id)
            .execute(w.conn())
            .await?;
        w.audit(
            actor,
            "disable",
            "user",
            after.project.as_deref(),
            &after.email,
            Some(&before),
            Some(&after),
        )
        .await?;
        w.commit().await?;
        Ok(after)
    }

    pub(crate) async fn check_login_impl(&self, email: &str, pw: &str) -> Result<Option<User>> {
        let found = match normalise_email(email) {
            Ok(email) => {
                let sql = format!(
                    "SELECT {USER_COLUMNS}, password_hash FROM users \
                     WHERE email = $1 AND disabled_at IS NULL"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(email)
                    .fetch_optional(&mut *self.read().await?)
                    .await?
                    .as_ref()
                    .map(|row| Ok::<_, StoreError>((user(row)?, rows::text(row, "password_hash")?)))
                    .transpose()?
            }
            Err(_) => None,
        };
        let (user, hash) = match found {
            Some((u, h)) => (Some(u), Some(h)),
            None => (None, None),
        };
        if password::verify(hash, pw).await {
            Ok(user)
        } else {
            Ok(None)
        }
    }

    pub(crate) async fn create_session_impl(
        &self,
        user_id: &str,
        ttl: time::Duration,
    ) -> Result<CreatedSession> {
        // 43 base62 characters: 256 bits.
        let token = secret::random_base62(43)?;
        let created = now();
        let expires_at = created + ttl;
        let mut conn = self.read().await?;
        // Expired sessions go as new ones come: the table holds live ones.
        sqlx::query("DELETE FROM sessions WHERE expires_unix <= $1")
            .bind(created.unix_timestamp())
            .execute(&mut *conn)
            .await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND disabled_at IS NULL");
        let user = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?
            .as_ref()
            .map(user)
            .transpose()?
            .ok_or_else(|| StoreError::not_found("user", user_id))?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, created_at, expires_unix) VALUES ($1, $2, $3, $4)",
        )
        .bind(secret::hash(&token))
        .bind(user_id)
        .bind(fmt_time(created))
        .bind(expires_at.unix_timestamp())
        .execute(&mut *conn)
        .await?;
        Ok(CreatedSession {
            token,
            session: Session { user, expires_at },
        })
    }

    pub(crate) async fn session_impl(&self, token: &str) -> Result<Option<Session>> {
        if !is_session_token(token) {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {}, s.expires_unix FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id_hash = $1 AND s.expires_unix > $2 AND u.disabled_at IS NULL",
            USER_COLUMNS
                .split(", ")
                .map(|c| format!("u.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(secret::hash(token))
            .bind(now().unix_timestamp())
            .fetch_optional(&mut *self.read().await?)
            .await?
            .as_ref()
            .map(|row| {
                let expires = rows::int(row, "expires_unix")?;
                Ok(Session {
                    user: user(row)?,
                    expires_at: OffsetDateTime::from_unix_timestamp(expires)
                        .map_err(|e| StoreError::Backend(format!("session expiry: {e}")))?,
                })
            })
            .transpose()
    }

    pub(crate) async fn delete_session_impl(&self, token: &str) -> Result<()> {
        if !is_session_token(token) {
            return Ok(());
        }
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(secret::hash(token))
            .execute(&mut *self.read().await?)
            .await?;
        Ok(())
    }
}

/// Whether `token` has the shape of a session id (43 base62 characters);
/// anything else is refused without a lookup.
pub fn is_session_token(token: &str) -> bool {
    token.len() == 43 && token.bytes().all(|b| b.is_ascii_alphanumeric())
}
