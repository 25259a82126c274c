//! The SQL store: one implementation over sqlx's `Any` driver, so that
//! SQLite and PostgreSQL run the same queries on the same schema (integers
//! and text only; `$n` placeholders, which SQLite accepts too). What differs
//! is connecting, migrating, how a write transaction begins, and the
//! cross-node change notification (PostgreSQL `LISTEN`/`NOTIFY`).
//!
//! Each resource is one module saying only what is particular to it (its
//! rows, how an input makes or changes one); `resource.rs` holds what they
//! share: the generic list, read, create, replace, change and delete, and
//! the tail of every write (compile check, audit, revision, announcement).
//!
//! Every write runs in one transaction that first bumps the single-row
//! `revision` counter. That row lock serialises writers (SQLite does it
//! anyway with `BEGIN IMMEDIATE`), so the version checks and
//! existence checks that follow cannot race, and revisions commit in order.

mod alerts;
pub(crate) mod cluster;
mod documents;
mod environments;
mod experiments;
mod flags;
mod holdouts;
mod keys;
mod listen;
mod metrics;
mod projects;
mod resource;
mod rows;
mod segments;
mod trait_impl;
mod users;

use sqlx::AnyConnection;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Transaction};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::broadcast;

use crate::error::{Result, StoreError};
use crate::types::Change;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// The `NOTIFY` channel that carries changes between nodes.
const CHANNEL: &str = "switchyard_changes";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A config store on SQLite or PostgreSQL; see [`crate::open`].
#[derive(Debug)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    changes: broadcast::Sender<Change>,
    /// Random id of this store instance: a node ignores its own `NOTIFY`s,
    /// having already announced those changes locally.
    node: String,
    /// The PostgreSQL listener task, stopped when the store is dropped.
    _listener: Option<listen::ListenerTask>,
}

impl SqlStore {
    /// Opens (creating if needed) a SQLite database, e.g.
    /// `sqlite:///var/lib/switchyard/config.db` or `sqlite::memory:`, and
    /// applies the migrations.
    pub async fn open_sqlite(url: &str) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let url = if in_memory || url.contains("mode=") {
            url.to_string()
        } else if url.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        let mut options = AnyPoolOptions::new().after_connect(|conn, _| {
            Box::pin(async move {
                // WAL: readers never wait for the writer. The busy timeout
                // makes a second writer wait instead of failing at once.
                // FULL: a commit is on disk before it is acknowledged, so a
                // power loss cannot undo a config write the API confirmed
                // (NORMAL could). Config writes are rare; the cost is one
                // more fsync per write.
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("PRAGMA foreign_keys = ON")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("PRAGMA busy_timeout = 10000")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("PRAGMA synchronous = FULL")
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        });
        options = if in_memory {
            // Each connection to `:memory:` is its own database: keep one, forever.
            options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            options.max_connections(8)
        };
        let pool = options.connect(&url).await?;
        SQLITE_MIGRATIONS.run(&pool).await?;
        let (changes, _) = broadcast::channel(1024);
        Ok(SqlStore {
            pool,
            backend: Backend::Sqlite,
            changes,
            node: crate::secret::random_base62(16)?,
            _listener: None,
        })
    }

    /// Connects to PostgreSQL, e.g. `postgres://user@host:5432/db`, applies
    /// the migrations and starts listening for other nodes' changes.
    pub async fn open_postgres(url: &str) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(10)
            // While the database is unreachable a request fails (503)
            // after this long instead of sqlx's default 30 s.
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await?;
        POSTGRES_MIGRATIONS.run(&pool).await?;
        let node = crate::secret::random_base62(16)?;
        let (changes, _) = broadcast::channel(1024);
        let listener = listen::start(url, node.clone(), changes.clone()).await?;
        Ok(SqlStore {
            pool,
            backend: Backend::Postgres,
            changes,
            node,
            _listener: Some(listener),
        })
    }

    /// Begins a write: a transaction that holds the writer lock and has
    /// taken the next revision.
    pub(crate) async fn write(&self) -> Result<Write<'_>> {
        let mut tx = match self.backend {
            // IMMEDIATE takes the write lock now, not at the first write,
            // so two writers never deadlock upgrading their read locks.
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        let revision: i64 = sqlx::query_scalar(
            "UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value",
        )
        .fetch_one(&mut *tx)
        .await?;
        Ok(Write {
            tx,
            revision,
            store: self,
            changes: Vec::new(),
        })
    }

    pub(crate) async fn read(&self) -> Result<sqlx::pool::PoolConnection<Any>> {
        Ok(self.pool.acquire().await?)
    }
}

/// An open write transaction. Dropping it without [`Write::commit`] rolls
/// everything back.
pub(crate) struct Write<'a> {
    tx: Transaction<'static, Any>,
    pub revision: i64,
    store: &'a SqlStore,
    changes: Vec<Change>,
}

impl Write<'_> {
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Records that `project` (one environment, or all when `None`) changed
    /// at this write's revision.
    pub async fn touch(&mut self, project: &str, environment: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE projects SET revision = $1 WHERE key = $2")
            .bind(self.revision)
            .bind(project)
            .execute(&mut *self.tx)
            .await?;
        self.changes.push(Change {
            project: project.to_string(),
            environment: environment.map(str::to_string),
            revision: u64::try_from(self.revision).unwrap_or_default(),
            api_keys: false,
            resync: false,
        });
        Ok(())
    }

    /// Appends to the audit log, inside this transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn audit(
        &mut self,
        actor: &str,
        action: &str,
        resource_kind: &str,
        project: Option<&str>,
        resource_key: &str,
        before: Option<&impl serde::Serialize>,
        after: Option<&impl serde::Serialize>,
    ) -> Result<()> {
        let before = before.map(serde_json::to_string).transpose()?;
        let after = after.map(serde_json::to_string).transpose()?;
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, resource_kind, project, resource_key, \
             before_value, after_value) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(fmt_time(now()))
        .bind(actor)
        .bind(action)
        .bind(resource_kind)
        .bind(project)
        .bind(resource_key)
        .bind(before)
        .bind(after)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Commits, then tells this node's subscribers (and, on PostgreSQL,
    /// the other nodes', through `NOTIFY`, delivered at commit).
    pub async fn commit(mut self) -> Result<()> {
        if self.store.backend == Backend::Postgres {
            for change in &self.changes {
                let payload = listen::encode(&self.store.node, change)?;
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(payload)
                    .execute(&mut *self.tx)
                    .await?;
            }
        }
        self.tx.commit().await?;
        for change in self.changes {
            // No receivers is fine: nobody is listening yet.
            let _ = self.store.changes.send(change);
        }
        Ok(())
    }
}

pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub(crate) fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

pub(crate) fn parse_time(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| StoreError::Backend(format!("stored time {s:?} is unreadable: {e}")))
}

pub(crate) fn to_json(value: &impl serde::Serialize) -> Result<String> {
    Ok(serde_json::to_string(value)?)
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    Ok(serde_json::from_str(s)?)
}

/// Fails with `Conflict` unless the stored version is the expected one.
pub(crate) fn check_version(
    kind: &'static str,
    key: &str,
    current: i64,
    expected: i64,
) -> Result<()> {
    if current == expected {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            kind,
            key: key.to_string(),
            current,
        })
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn sqlite_commits_with_synchronous_full() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("config.db").display());
        let store = super::SqlStore::open_sqlite(&url).await.unwrap();
        let mut conn = store.read().await.unwrap();
        let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(level, 2, "2 is FULL (1 is NORMAL)");
    }
}
