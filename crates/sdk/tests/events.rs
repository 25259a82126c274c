//! Sending events and falling back to polling, against a scripted HTTP
//! server on loopback (the real server's behaviour is tested in
//! `crates/cli/tests/sdk.rs`): retries honour `Retry-After` and resend the
//! same event ids; a refused batch is dropped and counted; a full queue
//! drops its oldest events; `close` delivers what is queued; exposures
//! are deduplicated (and not logged when the caller gets its default); a
//! stream that never answers falls back to polling with `ETag`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use switchyard_sdk::{Client, Context, Status};

/// What the scripted server saw and will answer.
#[derive(Default)]
struct Script {
    /// Answers to `POST /api/v1/events`, in order; `200` once used up.
    answers: VecDeque<(StatusCode, Option<&'static str>)>,
    /// Bodies of event requests, with when they arrived.
    posts: Vec<(Instant, Value)>,
    /// `GET /sdk/v1/config` answers: (status, If-None-Match seen).
    polls: Vec<(u16, Option<String>)>,
}

type Shared = Arc<Mutex<Script>>;

const DOC: &str = r#"{"environment": "test", "revision": 3, "flags": [
    {"key": "exp", "type": "string",
     "variations": [{"key": "a", "value": "A"}, {"key": "b", "value": "B"}],
     "enabled": true, "off_variation": "a",
     "rules": [{"conditions": [], "serve": {"experiment": "e1"}}],
     "fallthrough": {"variation": "a"}}],
   "experiments": [{"key": "e1", "flag": "exp", "status": "running", "phase": 1,
     "variations": [{"variation": "a", "weight": 5000}, {"variation": "b", "weight": 5000}],
     "coverage": 10000}]}"#;

async fn events(State(s): State<Shared>, body: Bytes) -> Response {
    let mut s = s.lock().unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    s.posts.push((Instant::now(), v.clone()));
    let (status, retry_after) = s.answers.pop_front().unwrap_or((StatusCode::OK, None));
    let mut r = if status == StatusCode::OK {
        let n = v["events"].as_array().map_or(0, Vec::len);
        (
            StatusCode::OK,
            axum::Json(json!({"accepted": n, "duplicates": 0, "rejected": []})),
        )
            .into_response()
    } else {
        (
            status,
            axum::Json(json!({"error": "scripted", "message": "try later"})),
        )
            .into_response()
    };
    if let Some(ra) = retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, ra.parse().unwrap());
    }
    r
}

async fn config(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let inm = headers
        .get(header::IF_NONE_MATCH)
        .map(|v| v.to_str().unwrap().to_string());
    let status = if inm.as_deref() == Some("\"r3\"") {
        304
    } else {
        200
    };
    s.lock().unwrap().polls.push((status, inm));
    if status == 304 {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, "\"r3\"")]).into_response();
    }
    ([(header::ETAG, "\"r3\"")], DOC).into_response()
}

/// The stream never answers (an overloaded server, a half-dead proxy):
/// the client must give up on it and poll.
async fn stream() -> Response {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    StatusCode::BAD_GATEWAY.into_response()
}

async fn serve(script: Script) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(script));
    let app = Router::new()
        .route("/api/v1/events", post(events))
        .route("/sdk/v1/config", get(config))
        .route("/sdk/v1/stream", get(stream))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), shared)
}

fn fast(url: &str) -> switchyard_sdk::ClientBuilder {
    Client::builder(url, "test-key")
        .request_timeout(Duration::from_millis(300))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .event_retry_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .event_batching(500, Duration::from_millis(20))
}

fn ids(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_retry_honours_retry_after_and_resends_the_same_event_ids() {
    let (url, script) = serve(Script {
        answers: VecDeque::from([
            (StatusCode::TOO_MANY_REQUESTS, Some("1")),
            (StatusCode::SERVICE_UNAVAILABLE, None),
        ]),
        ..Script::default()
    })
    .await;
    let client = fast(&url).build().unwrap();
    for i in 0..5 {
        client.track(&format!("u{i}"), "purchase", Some(i as f64), None);
    }
    client.flush(Duration::from_secs(10)).await.unwrap();
    let posts = script.lock().unwrap().posts.clone();
    assert_eq!(posts.len(), 3, "429, 503, then 200");
    let first = ids(&posts[0].1);
    assert_eq!(first.len(), 5);
    assert_eq!(
        first
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        5,
        "ids are distinct"
    );
    for (_, body) in &posts[1..] {
        assert_eq!(ids(body), first, "a retry sends the same ids");
    }
    let waited = posts[1].0 - posts[0].0;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 honoured, waited {waited:?}"
    );
    let e = &posts[2].1["events"][3];
    assert_eq!(e["type"], "track");
    assert_eq!(e["unit"], "u3");
    assert_eq!(e["name"], "purchase");
    assert_eq!(e["value"], 3.0);
    assert!(e["time"].as_i64().unwrap() > 1_700_000_000_000);
    let stats = client.event_stats();
    assert_eq!((stats.delivered, stats.retries, stats.pending), (5, 2, 0));
    client.close().await;
}

#[tokio::test]
async fn a_batch_the_server_refuses_is_dropped_and_counted() {
    let (url, script) = serve(Script {
        answers: VecDeque::from([
            (StatusCode::BAD_REQUEST, None),
            (StatusCode::TOO_MANY_REQUESTS, Some("0")),
        ]),
        ..Script::default()
    })
    .await;
    let client = fast(&url).build().unwrap();
    client.track("u1", "purchase", None, None);
    client.flush(Duration::from_secs(10)).await.unwrap();
    client.track("u2", "purchase", None, None);
    client.flush(Duration::from_secs(10)).await.unwrap();
    let stats = client.event_stats();
    assert_eq!((stats.refused, stats.delivered, stats.retries), (1, 1, 1));
    let posts = script.lock().unwrap().posts.clone();
    assert_eq!(posts.len(), 3);
    // `Retry-After: 0` still waits the shortest backoff (20 ms here).
    assert!(posts[2].0 - posts[1].0 >= Duration::from_millis(19));
    client.close().await;
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_events_without_blocking() {
    // Nothing listens on port 9: every send fails and is retried.
    let client = fast("http://127.0.0.1:9")
        .event_capacity(10)
        .build()
        .unwrap();
    for i in 0..25 {
        client.track(&format!("u{i}"), "purchase", None, None);
    }
    let stats = client.event_stats();
    assert_eq!(stats.pending, 10, "{stats:?}");
    assert_eq!(stats.dropped_overflow, 15);
    let huge = serde_json::Map::from_iter([("blob".to_string(), Value::from("x".repeat(40_000)))]);
    client.track("u", "big", None, Some(huge));
    assert_eq!(client.event_stats().too_large, 1);
    assert!(matches!(
        client.flush(Duration::from_millis(100)).await,
        Err(switchyard_sdk::Error::FlushTimeout { pending: 10, .. })
    ));
}

#[tokio::test]
async fn close_delivers_what_is_queued_and_exposures_are_deduplicated() {
    let (url, script) = serve(Script::default()).await;
    let client = fast(&url)
        .bootstrap_json(DOC)
        .event_batching(500, Duration::from_secs(3600))
        .build()
        .unwrap();
    let mut ctx = Context::with_key("unit-1");
    ctx.set("plan", "pro")
        .set("profile", json!({"nested": true}));
    let first = client.string_value("exp", &ctx, "none");
    for _ in 0..3 {
        assert_eq!(client.string_value("exp", &ctx, "none"), first);
    }
    client.string_value("exp", &Context::with_key("unit-2"), "none");
    // Read with the wrong type: the caller gets its default, and no
    // variation was seen, so no exposure.
    assert!(!client.bool_value("exp", &Context::with_key("unit-3"), false));
    let d = client.int_details("exp", &Context::with_key("unit-3"), 7);
    assert_eq!(
        (d.value, d.error),
        (7, Some(switchyard_sdk::ErrorCode::TypeMismatch))
    );
    client.track("unit-1", "purchase", Some(9.5), None);
    let stats = client.event_stats();
    assert_eq!((stats.pending, stats.exposures_deduplicated), (3, 3));
    client.close().await;
    let posts = script.lock().unwrap().posts.clone();
    let events: Vec<&Value> = posts
        .iter()
        .flat_map(|(_, b)| b["events"].as_array().unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{events:#?}");
    let e = events[0];
    assert_eq!(e["type"], "exposure");
    assert_eq!(e["unit"], "unit-1");
    assert_eq!(e["experiment"], "e1");
    assert_eq!(e["flag"], "exp");
    assert_eq!(e["variation"].as_str().unwrap().to_uppercase(), first);
    // Scalar attributes only, as the server's own exposures carry.
    assert_eq!(e["attributes"], json!({"plan": "pro"}));
    assert_eq!(events[2]["type"], "track");
    assert!(matches!(
        client.flush(Duration::from_secs(1)).await,
        Err(switchyard_sdk::Error::Closed)
    ));
}

#[tokio::test]
async fn a_stream_that_never_answers_falls_back_to_polling_with_etag() {
    let (url, script) = serve(Script::default()).await;
    // A copy numbered higher than anything the server has (as after a
    // restore from backup): the server's first document replaces it.
    let newer = DOC.replace("\"revision\": 3", "\"revision\": 99");
    let builder = fast(&url).events(false).bootstrap_json(newer);
    let shown = format!("{builder:?}");
    assert!(
        !shown.contains("test-key"),
        "the key stays out of Debug: {shown}"
    );
    let client = builder.build().unwrap();
    assert_eq!(client.status().revision, 99);
    client
        .wait_until_ready(Duration::from_secs(5))
        .await
        .unwrap();
    let status = client.status();
    assert_eq!(
        (status.status, status.revision, status.streaming),
        (Status::Ready, 3, false)
    );
    // Each failed stream attempt is followed by a poll; after the first,
    // polls are conditional and answered 304.
    let start = Instant::now();
    while script.lock().unwrap().polls.len() < 3 {
        assert!(start.elapsed() < Duration::from_secs(5), "polling goes on");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let polls = script.lock().unwrap().polls.clone();
    assert_eq!(polls[0], (200, None));
    assert_eq!(polls[1], (304, Some("\"r3\"".to_string())));
    assert_eq!(client.status().status, Status::Ready);
    client.close().await;
}

/// `on_configuration` hears each document the client installs, once: the
/// bootstrap at build, then the server's, not again when a poll finds it
/// unchanged.
#[tokio::test]
async fn the_configuration_listener_hears_each_installed_document_once() {
    let (url, script) = serve(Script::default()).await;
    let heard: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = heard.clone();
    let bootstrap = DOC.replace("\"revision\": 3", "\"revision\": 1");
    let client = fast(&url)
        .stream_idle_timeout(Duration::from_millis(200))
        .bootstrap_json(bootstrap)
        .on_configuration(move |text| {
            let v: Value = serde_json::from_str(text).unwrap();
            sink.lock().unwrap().push(v["revision"].as_u64().unwrap());
        })
        .build()
        .unwrap();
    assert_eq!(*heard.lock().unwrap(), vec![1], "the bootstrap, at build");
    let start = Instant::now();
    while script
        .lock()
        .unwrap()
        .polls
        .iter()
        .filter(|p| p.0 == 304)
        .count()
        < 2
    {
        assert!(start.elapsed() < Duration::from_secs(10), "no 304 polls");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *heard.lock().unwrap(),
        vec![1, 3],
        "then the server's, once"
    );
    client.close().await;
}
