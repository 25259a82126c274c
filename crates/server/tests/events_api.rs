//! `POST /api/v1/events` and the dead-letter endpoints, over HTTP on a real
//! server with a real event log.

mod common;

use std::io::Write;

use common::{Backend, TestServer};
use serde_json::{Value, json};
use switchyard_store::{ApiKeyInput, ApiKeyKind};

async fn sdk_key(server: &TestServer, kind: ApiKeyKind, env: &str) -> String {
    server
        .store
        .create_api_key(
            "test",
            ApiKeyInput {
                name: format!("{env} sdk"),
                kind,
                project: Some("demo".into()),
                environment: Some(env.into()),
            },
        )
        .await
        .expect("key")
        .secret
}

async fn post(
    server: &TestServer,
    key: &str,
    content_type: &str,
    gzip: bool,
    body: Vec<u8>,
) -> (u16, Option<String>, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/events", server.url))
        .bearer_auth(key)
        .header("content-type", content_type);
    if gzip {
        req = req.header("content-encoding", "gzip");
    }
    let resp = req.body(body).send().await.expect("request");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

async fn get(server: &TestServer, key: &str, path: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", server.url))
        .bearer_auth(key)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn stored_events(server: &TestServer) -> Vec<Value> {
    let events = server.state.events.as_ref().unwrap();
    let s = events.stream();
    let (mut next, end) = s.bounds();
    let mut out = Vec::new();
    while next < end {
        let b = s.read(next, 1 << 20).await.unwrap();
        next = b.next;
        for r in b.records {
            out.push(
                serde_json::to_value(switchyard_events::decode_event(&r.payload).unwrap()).unwrap(),
            );
        }
    }
    out
}

#[tokio::test]
async fn a_batch_is_stored_but_for_its_bad_events_which_the_response_lists_by_index() {
    let server = common::start(Backend::Sqlite).await;
    let key = sdk_key(&server, ApiKeyKind::Client, "production").await;
    let body = json!([
        {"type": "exposure", "id": "e1", "unit": "u1", "experiment": "checkout", "variation": "b"},
        {"type": "track", "unit": "u1"},
        {"type": "track", "id": "e2", "unit": "u1", "name": "purchase", "value": 9.5},
        {"type": "track", "id": "e1", "unit": "u1", "name": "purchase"}
    ]);
    let (status, _, report) = post(
        &server,
        &key,
        "application/json",
        false,
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 2);
    assert_eq!(report["duplicates"], 1);
    assert_eq!(
        report["rejected"],
        json!([{"index": 1, "code": "missing_field", "field": "name", "message": "name is required"}])
    );
    let stored = stored_events(&server).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["project"], "demo");
    assert_eq!(stored[0]["environment"], "production");
    assert_eq!(stored[1]["value"], 9.5);
    server.stop().await;
}

#[tokio::test]
async fn gzip_and_ndjson_bodies_are_accepted() {
    let server = common::start(Backend::Sqlite).await;
    let key = sdk_key(&server, ApiKeyKind::Server, "development").await;
    let nd = "{\"type\":\"track\",\"unit\":\"a\",\"name\":\"n\"}\n{\"type\":\"track\",\"unit\":\"b\",\"name\":\"n\"}\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(nd.as_bytes()).unwrap();
    let (status, _, report) = post(
        &server,
        &key,
        "application/x-ndjson",
        true,
        gz.finish().unwrap(),
    )
    .await;
    assert_eq!(
        (status, report["accepted"].clone()),
        (200, json!(2)),
        "{report}"
    );
    let (status, _, report) = post(
        &server,
        &key,
        "application/x-ndjson",
        false,
        nd.as_bytes().to_vec(),
    )
    .await;
    assert_eq!((status, report["accepted"].clone()), (200, json!(2)));
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_clear_json_errors() {
    let server = common::start(Backend::Sqlite).await;
    let key = sdk_key(&server, ApiKeyKind::Server, "production").await;
    let (s, _, b) = post(
        &server,
        &key,
        "application/json",
        false,
        b"[{\"type\":".to_vec(),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let (s, _, b) = post(&server, &key, "text/plain", false, b"[]".to_vec()).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("unsupported_media_type"))
    );
    let (s, _, b) = post(&server, &key, "application/json", true, b"[]".to_vec()).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_body"))
    );
    let many = format!("[{}]", vec!["{}"; 10_001].join(","));
    let (s, _, b) = post(&server, &key, "application/json", false, many.into_bytes()).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let huge = vec![b' '; 2 << 20];
    let (s, _, b) = post(&server, &key, "application/json", false, huge).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (s, _, _) = post(
        &server,
        &server.admin_key,
        "application/json",
        false,
        b"[]".to_vec(),
    )
    .await;
    assert_eq!(s, 403, "an admin key is not an SDK key");
    let (s, _, _) = post(&server, "nope", "application/json", false, b"[]".to_vec()).await;
    assert_eq!(s, 401);
    server.stop().await;
}

#[tokio::test]
async fn dead_letters_are_listed_per_scope_and_replayed_by_an_editor() {
    let server = common::start(Backend::Sqlite).await;
    let prod = sdk_key(&server, ApiKeyKind::Server, "production").await;
    let dev = sdk_key(&server, ApiKeyKind::Server, "development").await;
    let bad = json!([{"type": "track", "unit": "u", "name": "n", "time": 5}]).to_string();
    let (s, _, _) = post(&server, &prod, "application/json", false, bad.into_bytes()).await;
    assert_eq!(s, 200);

    let (s, list) = get(&server, &prod, "/api/v1/events/dead-letters").await;
    assert_eq!(s, 200, "{list}");
    let letters = list["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["reason"]["code"], "invalid_time");
    assert_eq!(letters[0]["event"]["time"], 5);
    let (_, other) = get(&server, &dev, "/api/v1/events/dead-letters").await;
    assert_eq!(
        other["dead_letters"],
        json!([]),
        "a key sees its own environment only"
    );
    let (_, all) = get(
        &server,
        &server.admin_key,
        "/api/v1/events/dead-letters?project=demo",
    )
    .await;
    assert_eq!(all["dead_letters"].as_array().unwrap().len(), 1);

    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/events/dead-letters/replay", server.url))
        .bearer_auth(&prod)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403, "SDK keys cannot replay");
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/events/dead-letters/replay", server.url))
        .bearer_auth(&server.admin_key)
        .json(&json!({"project": "demo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let report: Value = resp.json().await.unwrap();
    assert_eq!(report["replayed"], 0);
    assert_eq!(
        report["still_rejected"][0]["reason"]["code"],
        "invalid_time"
    );
    server.stop().await;
}

#[tokio::test]
async fn metrics_report_accepted_rejected_and_log_figures() {
    let server = common::start(Backend::Sqlite).await;
    let key = sdk_key(&server, ApiKeyKind::Server, "production").await;
    let body = json!([{"type": "track", "unit": "u", "name": "n"}, {"type": "x"}]).to_string();
    post(&server, &key, "application/json", false, body.into_bytes()).await;
    let text = server.metrics_text().await;
    assert!(
        text.contains("switchyard_events_accepted_total 1"),
        "{text}"
    );
    assert!(text.contains("switchyard_events_rejected_total 1"));
    assert!(text.contains("switchyard_events_fsync_seconds_count"));
    assert!(text.contains("switchyard_events_consumer_lag_bytes"));
    assert!(text.trim_end().ends_with("# EOF"));
    assert_eq!(text.matches("# EOF").count(), 1);
    server.stop().await;
}

#[tokio::test]
async fn an_overloaded_log_answers_429_with_retry_after() {
    let server = common::start(Backend::Sqlite).await;
    let key = sdk_key(&server, ApiKeyKind::Server, "production").await;
    let events = server.state.events.clone().unwrap();
    // A consumer that never reads, with a tight lag bound, is the same
    // condition as an aggregator far behind.
    let dir = tempfile::tempdir().unwrap();
    let log = switchyard_events::EventLog::open(
        dir.path(),
        switchyard_events::LogConfig {
            max_consumer_lag: Some(10),
            ..Default::default()
        },
        Default::default(),
    )
    .unwrap();
    use switchyard_events::EventStream;
    log.commit("aggregator", 0).await.unwrap();
    let slow = switchyard_events::Events::with_streams(
        std::sync::Arc::new(log),
        std::sync::Arc::new(switchyard_events::MemoryStream::default()),
        events.limits().clone(),
        Default::default(),
        std::sync::Arc::new(switchyard_events::EventMetrics::new()),
    )
    .await
    .unwrap();
    let state = server.state.clone().with_events(std::sync::Arc::new(slow));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(switchyard_server::run(listener, state, async move {
        let _ = rx.await;
    }));
    let body = json!([{"type": "track", "unit": "u", "name": "n"}]).to_string();
    let send = || {
        reqwest::Client::new()
            .post(format!("{url}/api/v1/events"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };
    assert_eq!(send().await.unwrap().status().as_u16(), 200);
    let resp = send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "overloaded");
    let _ = tx.send(());
    let _ = task.await;
    server.stop().await;
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

#[tokio::test]
async fn a_gzip_body_of_several_members_is_read_to_its_last_member() {
    let server = common::start(Backend::Sqlite).await;
    let key = sdk_key(&server, ApiKeyKind::Client, "production").await;
    // What `cat a.gz b.gz` sends: one gzip stream of two members.
    let mut body = gzip(b"{\"type\":\"track\",\"id\":\"a\",\"unit\":\"u\",\"name\":\"n\"}\n");
    body.extend(gzip(
        b"{\"type\":\"track\",\"id\":\"b\",\"unit\":\"u\",\"name\":\"n\"}\n",
    ));
    let (status, _, report) = post(&server, &key, "application/x-ndjson", true, body).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 2, "{report}");
    assert_eq!(stored_events(&server).await.len(), 2);

    // Members that together inflate past the 16 MiB limit: a 413, whatever
    // each member alone inflates to.
    let member = gzip(&vec![b' '; 8 << 20]);
    let bomb = [member.clone(), member.clone(), member].concat();
    assert!(bomb.len() < 100_000);
    let (status, _, err) = post(&server, &key, "application/json", true, bomb).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    // Bytes after the last member that are not gzip: a 400, nothing stored.
    let mut trailing = gzip(b"{\"type\":\"track\",\"id\":\"c\",\"unit\":\"u\",\"name\":\"n\"}\n");
    trailing.extend(b"garbage");
    let (status, _, _) = post(&server, &key, "application/x-ndjson", true, trailing).await;
    assert_eq!(status, 400);
    assert_eq!(stored_events(&server).await.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_deeply_nested_rejected_event_from_a_client_key_does_not_break_the_dead_letter_listing() {
    let server = common::start(Backend::Sqlite).await;
    let key = sdk_key(&server, ApiKeyKind::Client, "production").await;
    let server_key = sdk_key(&server, ApiKeyKind::Server, "production").await;
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let body = format!(r#"[{{"type":"track","unit":"u","attributes":{{"a":{deep}}}}}]"#);
    let (status, _, report) = post(&server, &key, "application/json", false, body.into()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["rejected"][0]["code"], "missing_field");
    for k in [&server_key, &server.admin_key] {
        let resp = reqwest::Client::new()
            .get(format!("{}/api/v1/events/dead-letters", server.url))
            .bearer_auth(k)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let text = resp.text().await.unwrap();
        assert!(text.contains(&deep), "the event is listed as it was sent");
    }
    // A valid event nested that deep is refused at validation.
    let body = format!(r#"[{{"type":"track","unit":"u","name":"n","attributes":{{"a":{deep}}}}}]"#);
    let (_, _, report) = post(&server, &key, "application/json", false, body.into()).await;
    assert_eq!(report["accepted"], 0);
    assert_eq!(report["rejected"][0]["code"], "too_deep");
    server.stop().await;
}

#[tokio::test]
async fn dead_letters_are_listed_page_by_page_following_next() {
    let server = common::start(Backend::Sqlite).await;
    let key = sdk_key(&server, ApiKeyKind::Server, "production").await;
    for i in 0..5 {
        let bad = json!([{"type": "track", "unit": format!("u{i}")}]).to_string();
        post(&server, &key, "application/json", false, bad.into_bytes()).await;
    }
    let mut units = Vec::new();
    let mut path = "/api/v1/events/dead-letters?limit=2".to_string();
    for _ in 0..3 {
        let (s, page) = get(&server, &key, &path).await;
        assert_eq!(s, 200, "{page}");
        for l in page["dead_letters"].as_array().unwrap() {
            units.push(l["event"]["unit"].as_str().unwrap().to_string());
        }
        match page["next"].as_u64() {
            Some(n) => path = format!("/api/v1/events/dead-letters?limit=2&from={n}"),
            None => break,
        }
    }
    assert_eq!(units, ["u0", "u1", "u2", "u3", "u4"]);
    server.stop().await;
}

#[tokio::test]
async fn replay_accepts_an_empty_body() {
    let server = common::start(Backend::Sqlite).await;
    let key = sdk_key(&server, ApiKeyKind::Server, "production").await;
    let bad = json!([{"type": "track", "unit": "u", "name": "n", "time": 5}]).to_string();
    post(&server, &key, "application/json", false, bad.into_bytes()).await;
    let url = format!("{}/api/v1/events/dead-letters/replay", server.url);
    let resp = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&server.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let report: Value = resp.json().await.unwrap();
    assert_eq!(
        report["still_rejected"][0]["reason"]["code"],
        "invalid_time"
    );
    let resp = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&server.admin_key)
        .header("content-type", "application/json")
        .body("{\"nope\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400, "a body, when sent, is checked");
    server.stop().await;
}

#[tokio::test]
async fn a_full_disk_answers_503_makes_readyz_not_ready_and_both_recover_without_a_restart() {
    use switchyard_events::log::SpaceLimit;
    let server = common::start(Backend::Sqlite).await;
    let key = sdk_key(&server, ApiKeyKind::Server, "production").await;
    let dir = tempfile::tempdir().unwrap();
    let space = SpaceLimit::new(u64::MAX / 2);
    let defaults = switchyard_events::EventsConfig::default();
    let config = switchyard_events::EventsConfig {
        log: switchyard_events::LogConfig {
            space: Some(space.clone()),
            ..defaults.log.clone()
        },
        ..defaults
    };
    let events = switchyard_events::Events::open(dir.path(), config)
        .await
        .unwrap();
    let state = server
        .state
        .clone()
        .with_events(std::sync::Arc::new(events));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(switchyard_server::run(listener, state, async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::new();
    let body: String = json!(
        (0..20)
            .map(|i| json!({"type": "track", "id": format!("e{i}"), "unit": "u", "name": "n"}))
            .collect::<Vec<_>>()
    )
    .to_string();
    let send = || {
        client
            .post(format!("{url}/api/v1/events"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };
    let ready = || client.get(format!("{url}/readyz")).send();
    assert_eq!(ready().await.unwrap().status().as_u16(), 200);

    space.set_free(300);
    let resp = send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "unavailable");
    assert!(
        !err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("simulated"),
        "the disk's error stays in the log: {err}"
    );
    let not_ready = ready().await.unwrap();
    assert_eq!(not_ready.status().as_u16(), 503);
    let not_ready: Value = not_ready.json().await.unwrap();
    assert_eq!(not_ready["status"], "not_ready", "{not_ready}");
    assert_eq!(
        not_ready["checks"]["event_log"], "cannot_write",
        "{not_ready}"
    );

    space.set_free(u64::MAX / 2);
    let t = std::time::Instant::now();
    while ready().await.unwrap().status().as_u16() != 200 {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "still not ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let resp = send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let report: Value = resp.json().await.unwrap();
    assert_eq!(
        (report["accepted"].as_u64(), report["duplicates"].as_u64()),
        (Some(20), Some(0))
    );
    let _ = tx.send(());
    let _ = task.await;
    server.stop().await;
}

#[tokio::test]
async fn an_editor_exports_the_stored_events_of_one_environment_and_time_range_as_ndjson() {
    let server = common::start(Backend::Sqlite).await;
    let prod = sdk_key(&server, ApiKeyKind::Server, "production").await;
    let dev = sdk_key(&server, ApiKeyKind::Server, "development").await;
    let admin_key = |role| {
        let store = server.store.clone();
        async move {
            store
                .create_api_key(
                    "test",
                    ApiKeyInput {
                        name: "person".into(),
                        kind: ApiKeyKind::Admin(role),
                        project: None,
                        environment: None,
                    },
                )
                .await
                .unwrap()
                .secret
        }
    };
    let editor = admin_key(switchyard_store::Role::Editor).await;
    let viewer = admin_key(switchyard_store::Role::Viewer).await;
    // 3,000 events of about 1 KiB: several chunks of the log.
    let t0: i64 = 1_767_225_600_000;
    let pad = "x".repeat(1000);
    for part in 0..6 {
        let evs: Vec<Value> = (0..500)
            .map(|i| {
                let n = part * 500 + i;
                json!({"type": "track", "id": format!("p{n}"), "unit": format!("u{n}"),
                       "name": "buy", "value": n, "time": t0 + n as i64,
                       "attributes": {"pad": pad}})
            })
            .collect();
        let (s, _, r) = post(
            &server,
            &prod,
            "application/json",
            false,
            json!(evs).to_string().into(),
        )
        .await;
        assert_eq!((s, r["accepted"].as_u64()), (200, Some(500)), "{r}");
    }
    let other = json!([{"type": "track", "id": "d", "unit": "u", "name": "buy", "time": t0 + 5}]);
    post(
        &server,
        &dev,
        "application/json",
        false,
        other.to_string().into(),
    )
    .await;

    let export = |key: String, query: String| {
        let url = format!("{}/api/v1/events/export?{query}", server.url);
        async move {
            let resp = reqwest::Client::new()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let ct = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            (status, ct, resp.text().await.unwrap())
        }
    };
    let (s, ct, body) = export(editor.clone(), "project=demo&environment=production".into()).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(ct.as_deref(), Some("application/x-ndjson"));
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3000);
    assert_eq!(lines[0]["id"], "p0");
    assert_eq!(lines[0]["environment"], "production");
    assert_eq!(lines[0]["attributes"]["pad"], pad.as_str());
    assert_eq!(lines[2999]["value"], 2999.0);

    let range = format!(
        "project=demo&environment=production&from={}&to=2026-01-01T00:00:00.100Z",
        t0 + 10
    );
    let (s, _, body) = export(editor.clone(), range).await;
    assert_eq!(s, 200);
    let ids: Vec<String> = body
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let want: Vec<String> = (10..100).map(|n| format!("p{n}")).collect();
    assert_eq!(ids, want, "from is inclusive, to exclusive");

    // An exported line is a valid event to send again.
    let (s, _, r) = post(
        &server,
        &dev,
        "application/x-ndjson",
        false,
        body.lines().next().unwrap().as_bytes().to_vec(),
    )
    .await;
    assert_eq!((s, r["accepted"].as_u64()), (200, Some(1)), "{r}");

    let q = "project=demo&environment=production".to_string();
    assert_eq!(
        export(viewer, q.clone()).await.0,
        403,
        "raw events need the editor role"
    );
    assert_eq!(
        export(prod.clone(), q.clone()).await.0,
        403,
        "SDK keys may not export"
    );
    assert_eq!(export("nope".into(), q).await.0, 401);
    let (s, _, e) = export(editor.clone(), "project=demo".into()).await;
    assert_eq!(s, 400, "{e}");
    let (s, _, e) = export(
        editor.clone(),
        "project=demo&environment=production&from=yesterday".into(),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    assert!(e.contains("\"field\":\"from\""), "{e}");
    let (s, _, _) = export(editor, "project=demo&environment=nowhere".into()).await;
    assert_eq!(s, 404);
    server.stop().await;
}
