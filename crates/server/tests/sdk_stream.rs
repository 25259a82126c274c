//! The SDK endpoints: the configuration document with its ETag, and the
//! server-sent-events stream that pushes every change, on both backends.

mod common;

use std::time::{Duration, Instant};

use common::{BACKENDS, Backend, TestServer, start, start_with};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_server::ServerConfig;
use switchyard_store::{ApiKeyInput, ApiKeyKind, FlagInput};

const ACTOR: &str = "test";

/// A flag of our own (on in production) and a server and a client key.
async fn setup(server: &TestServer) -> (String, String) {
    server
        .add_demo_flag(json!({
            "key": "s-switch", "name": "switch", "type": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "environments": {"production": {"enabled": true, "off_variation": "off",
                                            "fallthrough": {"variation": "on"}}}}))
        .await;
    let srv = server.demo_sdk_key(ApiKeyKind::Server).await;
    let cli = server.demo_sdk_key(ApiKeyKind::Client).await;
    (srv.secret, cli.secret)
}

fn enabled_in(document: &Value, flag: &str) -> Option<bool> {
    document["flags"]
        .as_array()?
        .iter()
        .find(|f| f["key"] == flag)?["enabled"]
        .as_bool()
}

/// One parsed server-sent event, or a comment line.
#[derive(Debug, Default)]
struct SseEvent {
    event: String,
    id: String,
    data: String,
    comment: Option<String>,
}

/// Reads SSE frames from a streaming response body.
struct SseReader {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl SseReader {
    fn new(resp: reqwest::Response) -> Self {
        SseReader {
            body: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next frame, or `None` when the server ended the stream.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut ev = SseEvent::default();
                for line in frame.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        ev.comment = Some(c.trim().to_string());
                    } else if let Some((field, value)) = line.split_once(':') {
                        let value = value.strip_prefix(' ').unwrap_or(value);
                        match field {
                            "event" => ev.event = value.to_string(),
                            "id" => ev.id = value.to_string(),
                            "data" => ev.data.push_str(value),
                            _ => {}
                        }
                    }
                }
                return Some(ev);
            }
            let chunk = self.body.next().await?.ok()?;
            self.buf
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8 stream"));
        }
    }

    /// The next `config` event, skipping keep-alive comments.
    async fn next_config(&mut self) -> Option<SseEvent> {
        loop {
            let ev = self.next().await?;
            if ev.event == "config" {
                return Some(ev);
            }
        }
    }
}

async fn open_stream(server: &TestServer, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}/sdk/v1/stream", server.url))
        .bearer_auth(key)
        .send()
        .await
        .expect("stream request")
}

#[tokio::test]
async fn the_config_document_carries_an_etag_and_answers_304_when_unchanged() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let (server_key, client_key) = setup(&server).await;
        let http = reqwest::Client::new();
        let url = format!("{}/sdk/v1/config", server.url);
        let resp = http
            .get(&url)
            .bearer_auth(&server_key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{backend:?}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let etag = resp.headers()["etag"].to_str().unwrap().to_string();
        let doc: Value = resp.json().await.unwrap();
        assert_eq!(doc["environment"], "production");
        assert_eq!(enabled_in(&doc, "s-switch"), Some(true));
        let snapshot = server
            .state
            .snapshots
            .get("demo", "production")
            .unwrap()
            .load();
        assert_eq!(doc["revision"], snapshot.revision);

        let resp = http
            .get(&url)
            .bearer_auth(&server_key)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(resp.headers()["etag"], etag.as_str());
        assert!(resp.bytes().await.unwrap().is_empty());

        // After a change the old tag no longer matches.
        let flag = server.store.get_flag("demo", "s-switch").await.unwrap();
        let mut input: FlagInput = serde_json::from_value(serde_json::to_value(&flag).unwrap())
            .expect("definition reads as input");
        input.description = "changed".into();
        input.environments.get_mut("production").unwrap().enabled = false;
        server
            .store
            .update_flag(ACTOR, "demo", "s-switch", flag.version, input)
            .await
            .unwrap();
        server
            .state
            .snapshots
            .reload_project("demo", None)
            .await
            .unwrap();
        let resp = http
            .get(&url)
            .bearer_auth(&server_key)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_ne!(resp.headers()["etag"], etag.as_str());
        let doc: Value = resp.json().await.unwrap();
        assert_eq!(enabled_in(&doc, "s-switch"), Some(false));

        // Only server SDK keys read the document.
        for path in ["/sdk/v1/config", "/sdk/v1/stream"] {
            let url = format!("{}{path}", server.url);
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
            let r = http
                .get(&url)
                .bearer_auth(&client_key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
            let r = http
                .get(&url)
                .bearer_auth(&server.admin_key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn a_change_made_through_the_api_reaches_a_connected_stream_in_under_a_second() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let (server_key, _) = setup(&server).await;
        let resp = open_stream(&server, &server_key).await;
        assert_eq!(resp.status(), StatusCode::OK, "{backend:?}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let mut sse = SseReader::new(resp);

        // On connect: the current document, its revision as the event id.
        let first = sse.next_config().await.expect("initial event");
        let doc: Value = serde_json::from_str(&first.data).expect("document");
        assert_eq!(first.id, doc["revision"].to_string());
        assert_eq!(enabled_in(&doc, "s-switch"), Some(true));
        let config = reqwest::Client::new()
            .get(format!("{}/sdk/v1/config", server.url))
            .bearer_auth(&server_key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(first.data, config, "the stream sends the same document");
        assert_eq!(server.state.metrics.stream_clients.get(), 1);

        // Flip the kill switch through the control API.
        let http = reqwest::Client::new();
        let flag_url = format!("{}/api/v1/projects/demo/flags/s-switch", server.url);
        let read = http
            .get(&flag_url)
            .bearer_auth(&server.admin_key)
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), StatusCode::OK);
        let version = read.headers()["etag"].to_str().unwrap().to_string();
        let sent = Instant::now();
        let patch = http
            .patch(format!("{flag_url}/environments/production"))
            .bearer_auth(&server.admin_key)
            .header("if-match", version)
            .json(&json!({"enabled": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            patch.status(),
            StatusCode::OK,
            "{}",
            patch.text().await.unwrap()
        );
        let next = tokio::time::timeout(Duration::from_secs(5), sse.next_config())
            .await
            .expect("the change arrives")
            .expect("stream still open");
        let latency = sent.elapsed();
        let doc: Value = serde_json::from_str(&next.data).unwrap();
        assert_eq!(enabled_in(&doc, "s-switch"), Some(false), "{backend:?}");
        let revision: u64 = next.id.parse().unwrap();
        assert!(revision > first.id.parse::<u64>().unwrap());
        assert!(
            latency < Duration::from_secs(1),
            "{backend:?}: change reached the stream after {latency:?}"
        );
        eprintln!("{backend:?}: API change to SSE client in {latency:?}");

        drop(sse);
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.state.metrics.stream_clients.get() != 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            server.state.metrics.stream_clients.get(),
            0,
            "a closed stream is uncounted"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn an_idle_stream_gets_keep_alive_comments() {
    let config = ServerConfig {
        stream_keepalive: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    let server = start_with(Backend::Sqlite, config).await;
    let (server_key, _) = setup(&server).await;
    let mut sse = SseReader::new(open_stream(&server, &server_key).await);
    sse.next_config().await.expect("initial event");
    let ev = tokio::time::timeout(Duration::from_secs(5), sse.next())
        .await
        .expect("a frame within five seconds")
        .expect("stream open");
    assert_eq!(ev.comment.as_deref(), Some("keep-alive"), "{ev:?}");
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_ends_open_streams_instead_of_waiting_for_them() {
    let server = start(Backend::Sqlite).await;
    let (server_key, _) = setup(&server).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut sse = SseReader::new(open_stream(&server, &server_key).await);
        sse.next_config().await.expect("initial event");
        streams.push(sse);
    }
    let started = Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    for mut sse in streams {
        let end = tokio::time::timeout(Duration::from_secs(5), sse.next_config())
            .await
            .expect("the stream ends");
        assert!(end.is_none(), "no more events after shutdown");
    }
}

#[tokio::test]
async fn a_change_in_one_environment_wakes_only_that_environments_streams() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let (production_key, _) = setup(&server).await;
        let development_key = server
            .store
            .create_api_key(
                ACTOR,
                ApiKeyInput {
                    name: "dev".into(),
                    kind: ApiKeyKind::Server,
                    project: Some("demo".into()),
                    environment: Some("development".into()),
                },
            )
            .await
            .expect("development key")
            .secret;
        let mut production = SseReader::new(open_stream(&server, &production_key).await);
        let mut development = SseReader::new(open_stream(&server, &development_key).await);
        production.next_config().await.expect("initial event");
        development.next_config().await.expect("initial event");
        let development_before = server
            .state
            .snapshots
            .get("demo", "development")
            .expect("development")
            .load();

        // Switch the flag off in production only, through the API.
        let http = reqwest::Client::new();
        let flag_url = format!("{}/api/v1/projects/demo/flags/s-switch", server.url);
        let read = http
            .get(&flag_url)
            .bearer_auth(&server.admin_key)
            .send()
            .await
            .unwrap();
        let version = read.headers()["etag"].to_str().unwrap().to_string();
        let patch = http
            .patch(format!("{flag_url}/environments/production"))
            .bearer_auth(&server.admin_key)
            .header("if-match", version)
            .json(&json!({"enabled": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(patch.status(), StatusCode::OK);
        let changed = tokio::time::timeout(Duration::from_secs(5), production.next_config())
            .await
            .expect("production hears of its change")
            .expect("stream open");
        let doc: Value = serde_json::from_str(&changed.data).unwrap();
        assert_eq!(enabled_in(&doc, "s-switch"), Some(false));

        // Neither the change nor the periodic full resync wakes development.
        server.state.snapshots.reload_all().await.expect("resync");
        let woke = tokio::time::timeout(Duration::from_secs(1), development.next_config()).await;
        assert!(
            woke.is_err(),
            "{backend:?}: development got an event for a production change: {woke:?}"
        );
        let development_after = server
            .state
            .snapshots
            .get("demo", "development")
            .expect("development")
            .load();
        assert!(
            std::sync::Arc::ptr_eq(&development_before, &development_after),
            "{backend:?}: the unchanged environment was rebuilt"
        );
        server.stop().await;
    }
}

/// `GET /sdk/v1/keys`: the live SDK keys of the server key's environment
/// with their secrets' hashes (never a secret), an ETag that answers 304
/// and moves when a key is revoked; server keys only.
#[tokio::test]
async fn the_key_list_names_the_environments_live_sdk_keys_by_hash_only() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let (server_key, client_key) = setup(&server).await;
        // `setup` wrote the keys to the store directly: the ring learns
        // of them from its notification, or now.
        server.state.auth.refresh().await.unwrap();
        let http = reqwest::Client::new();
        let url = format!("{}/sdk/v1/keys", server.url);
        let resp = http
            .get(&url)
            .bearer_auth(&server_key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{backend:?}");
        let etag = resp.headers()["etag"].to_str().unwrap().to_string();
        let text = resp.text().await.unwrap();
        for secret in [&server_key, &client_key, &server.admin_key] {
            assert!(!text.contains(secret.as_str()), "a secret leaks: {text}");
        }
        let list: switchyard_store::EnvironmentKeys = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (list.project.as_str(), list.environment.as_str()),
            ("demo", "production")
        );
        let mut hashes: Vec<&str> = list.keys.iter().map(|k| k.secret_hash.as_str()).collect();
        hashes.sort();
        let mut expected = vec![
            switchyard_store::hash_secret(&server_key),
            switchyard_store::hash_secret(&client_key),
        ];
        expected.sort();
        assert_eq!(hashes, expected, "only this environment's SDK keys");
        assert!(
            list.keys
                .iter()
                .all(|k| k.key.name.is_empty() && k.key.prefix.is_empty()),
            "names and prefixes are left out: {text}"
        );

        let resp = http
            .get(&url)
            .bearer_auth(&server_key)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        let r = http
            .get(&url)
            .bearer_auth(&client_key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::FORBIDDEN,
            "client keys only evaluate"
        );

        // Revoking the client key changes the list and its tag.
        let client_id = list
            .keys
            .iter()
            .find(|k| k.secret_hash == switchyard_store::hash_secret(&client_key))
            .unwrap()
            .key
            .id
            .clone();
        let r = http
            .delete(format!("{}/api/v1/api-keys/{client_id}", server.url))
            .bearer_auth(&server.admin_key)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let resp = http
            .get(&url)
            .bearer_auth(&server_key)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let list: switchyard_store::EnvironmentKeys = resp.json().await.unwrap();
        assert_eq!(list.keys.len(), 1);

        // Client and admin keys may not read it.
        for (key, status) in [
            (&client_key, StatusCode::UNAUTHORIZED), // revoked now
            (&server.admin_key, StatusCode::FORBIDDEN),
        ] {
            let r = http.get(&url).bearer_auth(key).send().await.unwrap();
            assert_eq!(r.status(), status);
        }
        server.stop().await;
    }
}
