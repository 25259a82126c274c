//! API keys are verified from memory: evaluation, streams and ingestion go
//! on serving while PostgreSQL is unreachable (a TCP proxy in front of it
//! is cut, the shared server itself is never stopped), other routes answer
//! 503 with Retry-After, and a revocation reaches every node (two nodes on
//! one database) within seconds, ending the key's open streams there too.
//! A configuration write reaches another node's evaluation in milliseconds,
//! and a node that missed notifications catches up once its link returns.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Backend, TestServer};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_server::{AppState, ServerConfig};
use switchyard_store::{ConfigStore, FlagInput};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

const ACTOR: &str = "test";

/// A TCP proxy to PostgreSQL that can be cut: while down, it closes every
/// open connection and every new one at once, as a database that went away.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// Bumped on every cut; open pipes end when it moves.
    cuts: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: &'static str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let up = Arc::new(AtomicBool::new(true));
        let cuts = watch::Sender::new(0u64);
        let (up2, cuts2) = (up.clone(), cuts.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = cuts2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            up,
            cuts,
            task,
        }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Closes the open connections but takes new ones: a link that drops
    /// and comes back at once.
    fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server node on a store URL (the database must exist).
struct Node {
    url: String,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _events: tempfile::TempDir,
}

impl Node {
    async fn start(store: Arc<dyn ConfigStore>) -> Node {
        let events_dir = tempfile::tempdir().expect("tempdir");
        let events = switchyard_events::Events::open(events_dir.path(), Default::default())
            .await
            .expect("event log opens");
        let state = AppState::new(store, ServerConfig::default())
            .await
            .expect("state")
            .with_events(Arc::new(events));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(switchyard_server::run(
            listener,
            state.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        Node {
            url: format!("http://{addr}"),
            state,
            stop: Some(tx),
            task,
            _events: events_dir,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// A second node on the first one's PostgreSQL database.
async fn second_node(first: &TestServer) -> Node {
    let url = first.store_url.clone().expect("a PostgreSQL test server");
    let store = switchyard_store::open(&url)
        .await
        .expect("second store opens");
    Node::start(store).await
}

/// `f-switch`, on in production, in `demo`.
async fn add_flag(store: &dyn ConfigStore) {
    let input: FlagInput = serde_json::from_value(json!({
        "key": "f-switch", "name": "switch", "type": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "environments": {"production": {"enabled": true, "off_variation": "off",
                                        "fallthrough": {"variation": "on"}}}}))
    .expect("flag input");
    store
        .create_flag(ACTOR, "demo", input)
        .await
        .expect("create flag");
}

/// Creates an SDK key through the API of the node at `url`: (id, secret).
async fn create_key(url: &str, admin: &str, kind: &str) -> (String, String) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/v1/api-keys"))
        .bearer_auth(admin)
        .json(&json!({"name": "sdk", "kind": kind, "project": "demo", "environment": "production"}))
        .send()
        .await
        .expect("create key");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.expect("json");
    (
        body["id"].as_str().expect("id").to_string(),
        body["secret"].as_str().expect("secret").to_string(),
    )
}

async fn revoke_key(url: &str, admin: &str, id: &str) {
    let resp = reqwest::Client::new()
        .delete(format!("{url}/api/v1/api-keys/{id}"))
        .bearer_auth(admin)
        .send()
        .await
        .expect("revoke");
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}

async fn evaluate(url: &str, key: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{url}/ofrep/v1/evaluate/flags/f-switch"))
        .bearer_auth(key)
        .json(&json!({"context": {"targetingKey": "user-1"}}))
        .send()
        .await
        .expect("evaluate")
        .status()
}

/// The stream of `key` on the node at `url`, past its first `config` event.
async fn open_stream(
    url: &str,
    key: &str,
) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>> {
    let resp = reqwest::Client::new()
        .get(format!("{url}/sdk/v1/stream"))
        .bearer_auth(key)
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = Box::pin(resp.bytes_stream());
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("first event in time")
        .expect("stream open")
        .expect("chunk");
    assert!(first.starts_with(b"event: config"), "{first:?}");
    body
}

/// Reads the stream until the server ends it; fails after `within`.
async fn ends_within(
    body: &mut std::pin::Pin<
        Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>,
    >,
    within: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let mut config_events = 0;
    loop {
        match tokio::time::timeout_at((started + within).into(), body.next()).await {
            Err(_) => {
                return Err(format!(
                    "still open after {within:?} ({config_events} config events after revocation)"
                ));
            }
            Ok(None) | Ok(Some(Err(_))) => return Ok(started.elapsed()),
            Ok(Some(Ok(chunk))) => {
                if chunk.starts_with(b"event: config") {
                    config_events += 1;
                }
            }
        }
    }
}

#[tokio::test]
async fn evaluation_streams_and_ingestion_keep_serving_while_postgresql_is_unreachable() {
    // The database is created directly, then reached only through the proxy.
    let (admin_url, name, _) = common::fresh_postgres_database().await;
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let base = admin_url.rsplit_once('/').expect("URL names a database").0;
    let base = base.replace("127.0.0.1:5432", &proxy.addr.to_string());
    assert!(
        base.contains(&proxy.addr.to_string()),
        "test URL {admin_url} is not on 127.0.0.1:5432"
    );
    let store = switchyard_store::open(&format!("{base}/{name}"))
        .await
        .expect("store through the proxy");
    let boot = switchyard_store::bootstrap(store.as_ref(), true)
        .await
        .expect("bootstrap")
        .expect("admin key");
    add_flag(store.as_ref()).await;
    let node = Node::start(store).await;
    let admin = boot.admin_key_secret;
    // Keys made before the outage but never used: in no per-secret cache.
    let (_, server_key) = create_key(&node.url, &admin, "server").await;
    let (_, client_key) = create_key(&node.url, &admin, "client").await;
    let mut open_before = open_stream(&node.url, &server_key).await;
    let http = reqwest::Client::new();

    proxy.down();
    // The store is really gone: a plain read fails.
    assert!(node.state.store.list_projects().await.is_err());

    for key in [&server_key, &client_key] {
        assert_eq!(
            evaluate(&node.url, key).await,
            StatusCode::OK,
            "OFREP during the outage"
        );
    }
    let bulk = http
        .post(format!("{}/ofrep/v1/evaluate/flags", node.url))
        .bearer_auth(&client_key)
        .json(&json!({"context": {"targetingKey": "user-1"}}))
        .send()
        .await
        .expect("bulk");
    assert_eq!(bulk.status(), StatusCode::OK);
    let config = http
        .get(format!("{}/sdk/v1/config", node.url))
        .bearer_auth(&server_key)
        .send()
        .await
        .expect("config");
    assert_eq!(config.status(), StatusCode::OK);
    let mut opened_during = open_stream(&node.url, &server_key).await;
    let events = http
        .post(format!("{}/api/v1/events", node.url))
        .bearer_auth(&client_key)
        .json(&json!([{"type": "track", "id": "o-1", "unit": "u1", "name": "purchase"}]))
        .send()
        .await
        .expect("events");
    assert_eq!(
        events.status(),
        StatusCode::OK,
        "ingestion during the outage"
    );

    // Readiness: still ready to evaluate and ingest, with the store
    // reported as unreachable, so load balancers keep sending evaluation.
    let ready = http
        .get(format!("{}/readyz", node.url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK, "readyz during the outage");
    let ready: Value = ready.json().await.expect("readyz body");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["checks"]["config_store"], "unreachable", "{ready}");

    // Routes that need the store: 503 with Retry-After and the JSON error.
    let started = Instant::now();
    let resp = http
        .get(format!("{}/api/v1/projects", node.url))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("projects");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "5");
    let body: Value = resp.json().await.expect("json error");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        !body.to_string().contains("5432"),
        "no backend detail: {body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    // A well-formed secret the node does not know cannot be checked now.
    let unknown = format!("sy_server_{}", "A".repeat(32));
    let resp = http
        .post(format!("{}/ofrep/v1/evaluate/flags/f-switch", node.url))
        .bearer_auth(&unknown)
        .json(&json!({"context": {"targetingKey": "user-1"}}))
        .send()
        .await
        .expect("unknown key");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    // A malformed one needs no lookup.
    assert_eq!(
        evaluate(&node.url, "not-a-key").await,
        StatusCode::UNAUTHORIZED
    );

    // Both streams are still open: nothing but keep-alives may come.
    for s in [&mut open_before, &mut opened_during] {
        if let Ok(next) = tokio::time::timeout(Duration::from_millis(300), s.next()).await {
            assert!(
                next.is_some_and(|c| c.is_ok()),
                "a stream ended during the outage"
            );
        }
    }

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = http
            .get(format!("{}/api/v1/projects", node.url))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("projects")
            .status();
        if status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store did not come back: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready: Value = http
        .get(format!("{}/readyz", node.url))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("readyz body");
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["checks"]["config_store"], "ok", "{ready}");
    node.stop().await;
    drop(proxy);
    common::drop_postgres_database(&admin_url, &name).await;
}

#[tokio::test]
async fn a_key_revoked_on_one_node_is_refused_on_another_within_seconds() {
    let a = common::start(Backend::Postgres).await;
    add_flag(a.store.as_ref()).await;
    a.state.snapshots.reload_all().await.expect("reload");
    let b = second_node(&a).await;
    let (id, key) = create_key(&a.url, &a.admin_key, "client").await;
    for node in [&a.url, &b.url] {
        assert_eq!(evaluate(node, &key).await, StatusCode::OK);
    }
    // B knows the key from its ring (it heard of the creation), not the store.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.state.auth.is_live(&id) {
        assert!(
            Instant::now() < deadline,
            "node B never learnt of the new key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(evaluate(&b.url, &key).await, StatusCode::OK);

    revoke_key(&a.url, &a.admin_key, &id).await;
    assert_eq!(
        evaluate(&a.url, &key).await,
        StatusCode::UNAUTHORIZED,
        "at once on A"
    );
    let revoked = Instant::now();
    loop {
        let status = evaluate(&b.url, &key).await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            revoked.elapsed() < Duration::from_secs(2),
            "node B still accepts the revoked key after {:?}",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("revocation reached node B in {:?}", revoked.elapsed());
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn revoking_a_key_ends_its_streams_on_every_node() {
    let a = common::start(Backend::Postgres).await;
    let b = second_node(&a).await;
    let (id, key) = create_key(&a.url, &a.admin_key, "server").await;
    let (_, other) = create_key(&a.url, &a.admin_key, "server").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.state.auth.is_live(&id) {
        assert!(
            Instant::now() < deadline,
            "node B never learnt of the new key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut on_a = open_stream(&a.url, &key).await;
    let mut on_b = open_stream(&b.url, &key).await;
    let mut unrelated = open_stream(&b.url, &other).await;

    revoke_key(&a.url, &a.admin_key, &id).await;
    let took_a = ends_within(&mut on_a, Duration::from_secs(3))
        .await
        .expect("A's stream ends");
    let took_b = ends_within(&mut on_b, Duration::from_secs(3))
        .await
        .expect("B's stream ends");
    eprintln!("streams ended after {took_a:?} (A) and {took_b:?} (B)");
    assert!(
        ends_within(&mut unrelated, Duration::from_millis(500))
            .await
            .is_err(),
        "another key's stream stays open"
    );
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn deleting_an_environment_ends_its_streams_and_drops_its_keys_from_memory() {
    for backend in common::BACKENDS {
        let server = common::start(backend).await;
        let http = reqwest::Client::new();
        let env_url = format!("{}/api/v1/projects/demo/environments", server.url);
        let resp = http
            .post(&env_url)
            .bearer_auth(&server.admin_key)
            .json(&json!({"key": "doomed", "name": "Doomed"}))
            .send()
            .await
            .expect("create environment");
        assert_eq!(resp.status(), StatusCode::CREATED, "{backend:?}");
        let etag = resp.headers()["etag"].to_str().expect("etag").to_string();
        let resp = http
            .post(format!("{}/api/v1/api-keys", server.url))
            .bearer_auth(&server.admin_key)
            .json(&json!({"name": "sdk", "kind": "server", "project": "demo", "environment": "doomed"}))
            .send()
            .await
            .expect("create key");
        assert_eq!(resp.status(), StatusCode::CREATED);
        let body: Value = resp.json().await.expect("json");
        let (id, key) = (
            body["id"].as_str().unwrap().to_string(),
            body["secret"].as_str().unwrap().to_string(),
        );
        assert!(server.state.auth.is_live(&id));
        let mut stream = open_stream(&server.url, &key).await;

        let resp = http
            .delete(format!("{env_url}/doomed"))
            .bearer_auth(&server.admin_key)
            .header("if-match", etag)
            .send()
            .await
            .expect("delete environment");
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{backend:?}");
        // The API answered after this node's refresh.
        assert!(
            !server.state.auth.is_live(&id),
            "{backend:?}: the key is gone from memory"
        );
        ends_within(&mut stream, Duration::from_secs(3))
            .await
            .expect("the stream ends");
        let status = http
            .get(format!("{}/sdk/v1/config", server.url))
            .bearer_auth(&key)
            .send()
            .await
            .expect("config")
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{backend:?}");
        server.stop().await;
    }
}

#[tokio::test]
async fn revoking_a_key_on_sqlite_ends_its_stream_and_refuses_it_at_once() {
    let server = common::start(Backend::Sqlite).await;
    add_flag(server.store.as_ref()).await;
    let (id, key) = create_key(&server.url, &server.admin_key, "server").await;
    let mut stream = open_stream(&server.url, &key).await;
    revoke_key(&server.url, &server.admin_key, &id).await;
    assert_eq!(evaluate(&server.url, &key).await, StatusCode::UNAUTHORIZED);
    ends_within(&mut stream, Duration::from_secs(3))
        .await
        .expect("the stream ends");
    server.stop().await;
}

/// The value node `url` serves for `f-switch`, if it answers.
async fn switch_value(url: &str, key: &str) -> Option<bool> {
    let resp = reqwest::Client::new()
        .post(format!("{url}/ofrep/v1/evaluate/flags/f-switch"))
        .bearer_auth(key)
        .json(&json!({"context": {"targetingKey": "user-1"}}))
        .send()
        .await
        .ok()?;
    let body: Value = resp.json().await.ok()?;
    body["value"].as_bool()
}

/// Turns `f-switch` on or off in production through the API of `url`.
async fn set_switch(url: &str, admin: &str, enabled: bool) {
    let http = reqwest::Client::new();
    let flag = format!("{url}/api/v1/projects/demo/flags/f-switch");
    let etag = http
        .get(&flag)
        .bearer_auth(admin)
        .send()
        .await
        .expect("read flag")
        .headers()["etag"]
        .to_str()
        .expect("etag")
        .to_string();
    let resp = http
        .patch(format!("{flag}/environments/production"))
        .bearer_auth(admin)
        .header("if-match", etag)
        .json(&json!({"enabled": enabled}))
        .send()
        .await
        .expect("patch");
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
}

/// How long until node `url` serves `want`, polling every 5 ms.
async fn until_served(url: &str, key: &str, want: bool, limit: Duration) -> Duration {
    let start = Instant::now();
    while switch_value(url, key).await != Some(want) {
        assert!(
            start.elapsed() < limit,
            "{url} does not serve {want} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// A write on one node reaches another node's evaluation in milliseconds
/// (PostgreSQL `NOTIFY`); a node whose listener lost its connection while
/// a write happened elsewhere (its database link cut, the shared server
/// untouched) converges as soon as the link is back, by re-reading every
/// document, not at the next periodic resync (30 s).
#[tokio::test]
async fn a_write_on_one_node_reaches_another_and_a_node_that_missed_it_catches_up() {
    let a = common::start(Backend::Postgres).await;
    add_flag(a.store.as_ref()).await;
    a.state.snapshots.reload_all().await.expect("reload");
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let url = a.store_url.clone().expect("a PostgreSQL test server");
    let through_proxy = url.replace("127.0.0.1:5432", &proxy.addr.to_string());
    assert_ne!(
        through_proxy, url,
        "test URL {url} is not on 127.0.0.1:5432"
    );
    let b_store = switchyard_store::open(&through_proxy)
        .await
        .expect("second store through the proxy");
    let mut b_changes = b_store.subscribe();
    let b = Node::start(b_store).await;
    let (_, key) = create_key(&a.url, &a.admin_key, "client").await;
    until_served(&b.url, &key, true, Duration::from_secs(5)).await;

    let mut took = Vec::new();
    for round in 0..6 {
        let enabled = round % 2 == 1;
        set_switch(&a.url, &a.admin_key, enabled).await;
        took.push(until_served(&b.url, &key, enabled, Duration::from_secs(2)).await);
    }
    took.sort();
    eprintln!(
        "a write on node A served by node B after {:?} (median of 6; min {:?}, max {:?})",
        took[took.len() / 2],
        took[0],
        took[took.len() - 1]
    );

    // B's link to the database goes down; A writes meanwhile.
    assert_eq!(switch_value(&b.url, &key).await, Some(true));
    proxy.down();
    set_switch(&a.url, &a.admin_key, false).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        switch_value(&b.url, &key).await,
        Some(true),
        "B cannot have heard of it: it serves its copy"
    );
    proxy.restore();
    let caught_up = until_served(&b.url, &key, false, Duration::from_secs(5)).await;
    eprintln!("node B caught up {caught_up:?} after its database link returned");

    // A link that drops and is back at once: the listener reconnects
    // without an error, and still announces that it may have missed some.
    while b_changes.try_recv().is_ok() {}
    proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, b_changes.recv()).await {
            Ok(Ok(change)) if change.resync => break,
            Ok(Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            other => panic!("no resync announced after a brief cut: {other:?}"),
        }
    }
    b.stop().await;
    a.stop().await;
}
