//! Test databases: a temporary SQLite file, or a fresh PostgreSQL database.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sqlx::{Connection, PgConnection, Row};
use switchyard_store::ConfigStore;

pub type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a case gets: the store, and a way to look behind it.
#[derive(Debug, Clone)]
pub struct Target {
    pub store: Arc<dyn ConfigStore>,
    pub url: String,
    sqlite_path: Option<std::path::PathBuf>,
}

impl Target {
    /// A second store instance on the same database (another "node").
    pub async fn open_another(&self) -> Arc<dyn ConfigStore> {
        switchyard_store::open(&self.url).await.unwrap()
    }

    /// Everything stored about API keys, as text: for SQLite the raw bytes
    /// of the database files, for PostgreSQL every row of `api_keys`.
    pub async fn raw_api_keys(&self) -> String {
        match &self.sqlite_path {
            Some(path) => {
                let mut all = Vec::new();
                for suffix in ["", "-wal"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    if let Ok(bytes) = std::fs::read(&p) {
                        all.extend(bytes);
                    }
                }
                String::from_utf8_lossy(&all).into_owned()
            }
            None => {
                let mut conn = PgConnection::connect(&self.url).await.unwrap();
                let rows = sqlx::query("SELECT row_to_json(k)::text AS j FROM api_keys k")
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
                rows.iter()
                    .map(|r| r.get::<String, _>("j"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
    }
}

pub async fn run_sqlite(case: impl FnOnce(Target) -> CaseFuture) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.db");
    let url = format!("sqlite://{}", path.display());
    let store = switchyard_store::open(&url).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    case(Target {
        store,
        url,
        sqlite_path: Some(path),
    })
    .await;
}

fn admin_url() -> String {
    std::env::var("SWITCHYARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Runs `case` on a database of its own, dropped afterwards (also when the
/// case panics; the panic is then passed on).
pub async fn run_postgres(case: impl FnOnce(Target) -> CaseFuture) {
    let admin = admin_url();
    let mut conn = match PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL is needed for the conformance tests and is unreachable at {admin} \
             (set SWITCHYARD_TEST_DATABASE_URL, or start it: \
             pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start): {e}"
        ),
    };
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    let name = format!("sy_store_{}", u64::from_le_bytes(bytes));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let url = match admin.rfind('/') {
        Some(i) => format!("{}/{name}", &admin[..i]),
        None => panic!("SWITCHYARD_TEST_DATABASE_URL has no database name: {admin}"),
    };
    let outcome = {
        let store = switchyard_store::open(&url).await.unwrap();
        assert_eq!(store.backend(), "postgres");
        let target = Target {
            store,
            url,
            sqlite_path: None,
        };
        tokio::spawn(case(target)).await
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
