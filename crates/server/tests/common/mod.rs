//! Test harness: a real server on 127.0.0.1 port 0, on a fresh SQLite file
//! or a fresh PostgreSQL database, bootstrapped (with the demo project).
//!
//! PostgreSQL comes from `SWITCHYARD_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); when it is unreachable the
//! tests fail, never skip.
#![allow(dead_code)]

pub mod browser;

use std::sync::Arc;

use switchyard_server::aggregation::{Aggregation, AggregationConfig};
use switchyard_server::{AppState, ServerConfig};
use switchyard_store::ConfigStore;
use tokio::sync::oneshot;

pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Secret of the bootstrap admin key (role admin, all projects).
    pub admin_key: String,
    pub state: AppState,
    pub store: Arc<dyn ConfigStore>,
    /// The PostgreSQL database's URL (a second node can open it).
    pub store_url: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
    /// Holds the event log (`state.events`).
    pub events_dir: tempfile::TempDir,
    pg_database: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

pub async fn start(backend: Backend) -> TestServer {
    start_with(backend, ServerConfig::default()).await
}

pub async fn start_with(backend: Backend, config: ServerConfig) -> TestServer {
    start_full(backend, config, None::<fn(&mut AggregationConfig)>).await
}

/// A server that also runs the aggregation consumer (results API), with
/// its state under `events_dir`.
pub async fn start_with_aggregation(backend: Backend) -> TestServer {
    start_aggregating(backend, |_| {}).await
}

/// A server that also runs the aggregation consumer (and so the guardrail
/// monitor), with its settings tuned by `tune` (checkpoints in a temporary
/// directory beside the event log).
pub async fn start_aggregating(
    backend: Backend,
    tune: impl FnOnce(&mut AggregationConfig),
) -> TestServer {
    start_full(backend, ServerConfig::default(), Some(tune)).await
}

async fn start_full(
    backend: Backend,
    config: ServerConfig,
    aggregation: Option<impl FnOnce(&mut AggregationConfig)>,
) -> TestServer {
    let (url, dir, pg) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}", dir.path().join("config.db").display());
            (url, Some(dir), None)
        }
        Backend::Postgres => {
            let (admin, name, url) = fresh_postgres_database().await;
            (url, None, Some((admin, name)))
        }
    };
    let store = switchyard_store::open(&url).await.expect("store opens");
    let boot = switchyard_store::bootstrap(store.as_ref(), true)
        .await
        .expect("bootstrap")
        .expect("fresh store creates an admin key");
    let events_dir = tempfile::tempdir().expect("tempdir");
    let events = switchyard_events::Events::open(events_dir.path(), Default::default())
        .await
        .expect("event log opens");
    let state = AppState::new(store.clone(), config)
        .await
        .expect("state")
        .with_events(Arc::new(events));
    let state = match aggregation {
        None => state,
        Some(tune) => {
            let mut cfg = AggregationConfig::new(events_dir.path().join("aggregator"));
            cfg.poll_interval = std::time::Duration::from_millis(5);
            tune(&mut cfg);
            state.with_aggregation(Aggregation::open(cfg).expect("aggregator opens"))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(switchyard_server::run(
        listener,
        state.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    TestServer {
        url: format!("http://{addr}"),
        admin_key: boot.admin_key_secret,
        state,
        store,
        store_url: pg.is_some().then(|| url.clone()),
        stop: Some(tx),
        task: Some(task),
        _dir: dir,
        events_dir,
        pg_database: pg,
    }
}

impl TestServer {
    /// Creates a flag (its `FlagInput` as JSON) in `demo` and reloads the
    /// project's snapshots.
    pub async fn add_demo_flag(&self, flag: serde_json::Value) {
        let input: switchyard_store::FlagInput = serde_json::from_value(flag).expect("flag input");
        self.store
            .create_flag("test", "demo", input)
            .await
            .expect("create flag");
        self.state
            .snapshots
            .reload_project("demo", None)
            .await
            .expect("reload");
    }

    /// A new SDK key of `kind` for `demo`/production, made in the store.
    pub async fn demo_sdk_key(
        &self,
        kind: switchyard_store::ApiKeyKind,
    ) -> switchyard_store::CreatedApiKey {
        self.store
            .create_api_key(
                "test",
                switchyard_store::ApiKeyInput {
                    name: "sdk".into(),
                    kind,
                    project: Some("demo".into()),
                    environment: Some("production".into()),
                },
            )
            .await
            .expect("sdk key")
    }

    /// `GET /metrics` with the admin key (it needs one on the API listener).
    pub async fn metrics_text(&self) -> String {
        reqwest::Client::new()
            .get(format!("{}/metrics", self.url))
            .bearer_auth(&self.admin_key)
            .send()
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics text")
    }

    /// Stops the server gracefully and drops its PostgreSQL database.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
        }
        if let Some((admin, name)) = self.pg_database.take() {
            drop(self.store);
            drop(self.state);
            drop_postgres_database(&admin, &name).await;
        }
    }
}

fn admin_url() -> String {
    std::env::var("SWITCHYARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A new, empty database: (admin URL, its name, its URL).
pub async fn fresh_postgres_database() -> (String, String, String) {
    use sqlx::Connection;
    let admin = admin_url();
    let mut conn = match sqlx::PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL is needed for these tests and is unreachable at {admin} \
             (set SWITCHYARD_TEST_DATABASE_URL, or start it: \
             pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start): {e}"
        ),
    };
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("random");
    let name = format!("sy_server_{}", u64::from_le_bytes(bytes));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let i = admin.rfind('/').expect("database URL names a database");
    let url = format!("{}/{name}", &admin[..i]);
    (admin, name, url)
}

pub async fn drop_postgres_database(admin: &str, name: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}
