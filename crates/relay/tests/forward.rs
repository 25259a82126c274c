//! The forwarder against a scripted upstream: a 404 from an ingress that
//! is not ready is retried, a 413 halves the batch until it fits, and
//! every event, with an id of its own or one the relay gave it, arrives
//! once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use switchyard_relay::{Relay, RelayConfig};
use switchyard_store::{ApiKey, ApiKeyKind, EnvironmentKeys, LiveApiKey};

const KEY: &str = "sy_server_0123456789abcdefghijABCDEFGHIJkl";

#[derive(Default)]
struct Upstream {
    /// Event ids stored, with how often.
    ids: BTreeMap<String, usize>,
    /// Statuses answered to event posts, in order.
    answers: Vec<u16>,
}

type Shared = Arc<Mutex<Upstream>>;

/// The key list of `p`/`environment`: the one server key `secret`.
fn key_list(environment: &str, secret: &str) -> EnvironmentKeys {
    EnvironmentKeys {
        project: "p".into(),
        environment: environment.into(),
        keys: vec![LiveApiKey {
            key: ApiKey {
                id: format!("key_{environment}"),
                name: String::new(),
                kind: ApiKeyKind::Server,
                project: Some("p".into()),
                environment: Some(environment.into()),
                created_at: time::OffsetDateTime::UNIX_EPOCH,
                revoked_at: None,
                prefix: String::new(),
            },
            secret_hash: switchyard_store::hash_secret(secret),
        }],
    }
}

/// Serves `app` as the upstream, with a stream that is never available
/// (the relay polls); its base URL.
async fn serve_upstream(app: Router) -> String {
    let app = app.route(
        "/sdk/v1/stream",
        get(|| async { StatusCode::SERVICE_UNAVAILABLE }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A relay of `keys` from `url`, quick to poll and to retry.
fn relay_config(url: String, keys: &[&str], dir: &std::path::Path) -> RelayConfig {
    let keys = keys.iter().map(|k| k.to_string()).collect();
    let mut config = RelayConfig::new(url, keys, dir.to_path_buf());
    config.key_refresh = Duration::from_millis(100);
    config.forward_backoff = (Duration::from_millis(20), Duration::from_millis(100));
    config
}

async fn events(State(s): State<Shared>, body: Bytes) -> Response {
    let text = String::from_utf8(body.to_vec()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut s = s.lock().unwrap();
    // Not ready at first, then at most three events a request.
    let status = if s.answers.is_empty() {
        404
    } else if lines.len() > 3 {
        413
    } else {
        200
    };
    s.answers.push(status);
    if status != 200 {
        return StatusCode::from_u16(status).unwrap().into_response();
    }
    for e in &lines {
        *s.ids
            .entry(e["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    axum::Json(json!({"accepted": lines.len(), "duplicates": 0, "rejected": []})).into_response()
}

async fn keys() -> Response {
    let list = key_list("production", KEY);
    axum::Json(list).into_response()
}

async fn config() -> Response {
    axum::Json(json!({"environment": "production", "revision": 1, "flags": []})).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_batches_are_retried_or_halved_and_every_event_arrives_once() {
    let shared: Shared = Arc::default();
    let app = Router::new()
        .route("/api/v1/events", post(events))
        .route("/sdk/v1/keys", get(keys))
        .route("/sdk/v1/config", get(config))
        .with_state(shared.clone());
    let url = serve_upstream(app).await;
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(relay_config(url, &[KEY], dir.path()))
        .await
        .unwrap();
    let events = relay.state.events.clone().unwrap();
    let mut body = String::new();
    for i in 0..10 {
        let id = if i % 2 == 0 {
            format!(r#""id": "own-{i}", "#)
        } else {
            String::new()
        };
        body.push_str(&format!(
            r#"{{"type": "track", {id}"unit": "u-{i}", "name": "purchase"}}"#
        ));
        body.push('\n');
    }
    let report = events
        .ingest(
            "p",
            "production",
            body.as_bytes(),
            switchyard_events::BodyFormat::Ndjson,
            false,
            1_800_000_000_000,
        )
        .await
        .unwrap();
    assert_eq!(report.accepted, 10);

    let start = Instant::now();
    while shared.lock().unwrap().ids.len() < 10 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not forwarded: {:?}",
            shared.lock().unwrap().answers
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let upstream = shared.lock().unwrap();
    assert!(upstream.ids.values().all(|&n| n == 1), "{:?}", upstream.ids);
    assert_eq!(upstream.ids.len(), 10);
    let own = upstream
        .ids
        .keys()
        .filter(|id| id.starts_with("own-"))
        .count();
    assert_eq!(own, 5, "ids sent with events are kept: {:?}", upstream.ids);
    assert_eq!(upstream.answers[0], 404, "{:?}", upstream.answers);
    assert!(upstream.answers.contains(&413), "{:?}", upstream.answers);
    let readiness = switchyard_server::UpstreamHealth::check(relay.sources.as_ref()).1;
    assert_eq!(readiness["forwarding"]["forwarded"], 10, "{readiness}");
    assert_eq!(readiness["forwarding"]["dropped"], 0, "{readiness}");
    let metrics = relay.state.metrics.encode();
    for line in [
        "switchyard_relay_events_forwarded_total 10",
        "switchyard_relay_events_dropped_total 0",
        "switchyard_relay_forward_pending_bytes 0",
    ] {
        assert!(metrics.contains(line), "no {line:?} in {metrics}");
    }
    assert!(
        metrics.contains("switchyard_relay_environments{state=\"missing\"}"),
        "{metrics}"
    );
    relay.state.shutdown.send_replace(true);
}

const KEY_A: &str = "sy_server_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const KEY_B: &str = "sy_server_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
const KEY_C: &str = "sy_server_CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";

/// Three environments; the upstream refuses the keys of those in
/// `refused`.
#[derive(Default)]
struct TwoEnvs {
    refused: std::collections::BTreeSet<&'static str>,
    /// (environment, event id) stored, with how often.
    stored: BTreeMap<(String, String), usize>,
}

type SharedTwo = Arc<Mutex<TwoEnvs>>;

fn bearer(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string()
}

/// The environment of a key; `None` (answer 401) while it is refused.
fn environment_of(s: &SharedTwo, headers: &axum::http::HeaderMap) -> Option<&'static str> {
    let env = match bearer(headers).as_str() {
        KEY_A => "a",
        KEY_B => "b",
        KEY_C => "c",
        _ => return None,
    };
    (!s.lock().unwrap().refused.contains(env)).then_some(env)
}

async fn two_keys(State(s): State<SharedTwo>, headers: axum::http::HeaderMap) -> Response {
    let Some(env) = environment_of(&s, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let secret = match env {
        "a" => KEY_A,
        "b" => KEY_B,
        _ => KEY_C,
    };
    axum::Json(key_list(env, secret)).into_response()
}

async fn two_config(State(s): State<SharedTwo>, headers: axum::http::HeaderMap) -> Response {
    match environment_of(&s, &headers) {
        Some(env) => {
            axum::Json(json!({"environment": env, "revision": 1, "flags": []})).into_response()
        }
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn two_events(
    State(s): State<SharedTwo>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let Some(env) = environment_of(&s, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let mut s = s.lock().unwrap();
    for line in String::from_utf8(body.to_vec()).unwrap().lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            e["environment"], env,
            "sent with the key of its environment"
        );
        *s.stored
            .entry((env.to_string(), e["id"].as_str().unwrap().to_string()))
            .or_default() += 1;
    }
    axum::Json(json!({"accepted": 0, "duplicates": 0, "rejected": []})).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_a_refused_environment_are_parked_and_hold_back_no_other() {
    let shared: SharedTwo = Arc::new(Mutex::new(TwoEnvs {
        refused: ["a", "c"].into_iter().collect(),
        ..TwoEnvs::default()
    }));
    let app = Router::new()
        .route("/api/v1/events", post(two_events))
        .route("/sdk/v1/keys", get(two_keys))
        .route("/sdk/v1/config", get(two_config))
        .with_state(shared.clone());
    let url = serve_upstream(app).await;
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(relay_config(url, &[KEY_A, KEY_B, KEY_C], dir.path()))
        .await
        .unwrap();
    let events = relay.state.events.clone().unwrap();
    let ingest = |env: &'static str, from: usize| {
        let events = events.clone();
        async move {
            let body: String = (from..from + 20)
                .map(|i| format!("{{\"type\": \"track\", \"id\": \"{env}-{i}\", \"unit\": \"u-{i}\", \"name\": \"n\"}}\n"))
                .collect();
            let r = events
                .ingest(
                    "p",
                    env,
                    body.as_bytes(),
                    switchyard_events::BodyFormat::Ndjson,
                    false,
                    1_800_000_000_000,
                )
                .await
                .unwrap();
            assert_eq!(r.accepted, 20);
        }
    };
    // Interleaved in the log, the refused environments' events first.
    for from in [0, 20] {
        ingest("a", from).await;
        ingest("c", from).await;
        ingest("b", from).await;
    }
    let count = |env: &str| {
        shared
            .lock()
            .unwrap()
            .stored
            .keys()
            .filter(|(e, _)| e == env)
            .count()
    };
    let until = |env: &'static str, what: &'static str| {
        let count = &count;
        async move {
            let start = Instant::now();
            while count(env) < 40 {
                assert!(start.elapsed() < Duration::from_secs(10), "{what}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    until("b", "b's events are held back behind a's and c's").await;
    assert_eq!(count("a") + count("c"), 0, "a and c are refused");
    let readiness = switchyard_server::UpstreamHealth::check(relay.sources.as_ref()).1;
    assert_eq!(readiness["forwarding"]["parked"], 80, "{readiness}");

    // c is taken again while a is not: c's parked events are not held
    // back behind a's, which come first in the parked log.
    shared.lock().unwrap().refused.remove("c");
    until("c", "c's parked events wait behind a's").await;
    assert_eq!(count("a"), 0);
    shared.lock().unwrap().refused.remove("a");
    until("a", "a's parked events never arrive").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored = shared.lock().unwrap().stored.clone();
    assert_eq!(stored.len(), 120);
    assert!(stored.values().all(|&n| n == 1), "{stored:?}");
    let readiness = switchyard_server::UpstreamHealth::check(relay.sources.as_ref()).1;
    assert_eq!(readiness["forwarding"]["dropped"], 0, "{readiness}");
    assert_eq!(
        readiness["forwarding"]["parked"], 80,
        "parked once each: {readiness}"
    );
    assert_eq!(
        readiness["forwarding"]["parked_pending_bytes"], 0,
        "{readiness}"
    );
    relay.state.shutdown.send_replace(true);
}
