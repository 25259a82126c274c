//! Server time of the web UI's heaviest pages, without the network: a
//! signed-in request is handed to the router (`tower::ServiceExt::oneshot`)
//! and the whole HTML body read. What is measured is everything the server
//! does for the page: the session lookup, the store reads (SQLite), the
//! results computation and the rendering.
//!
//! - `ui/flag_list_1000`: the flag list of a project with 1,000 flags in
//!   two environments, each flag with two rules.
//! - `ui/results_10_metrics`: the results page of a running experiment
//!   measured on 10 metrics, after 2,000 units and their events were
//!   aggregated.
//!
//! Target (issue 11): under 20 ms each. It also prints the bytes of the
//! embedded UI assets.
//!
//! `cargo bench -p switchyard-server --bench ui_pages`

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchyard_server::aggregation::{Aggregation, AggregationConfig};
use switchyard_server::{AppState, ServerConfig};
use tower::ServiceExt;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FLAGS: usize = 1_000;
const METRICS: usize = 10;
const UNITS: usize = 2_000;

struct Fixture {
    store: Arc<dyn switchyard_store::ConfigStore>,
    app: Router,
    cookie: String,
    results_page: String,
    _state: AppState,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, bytes::Bytes) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, body)
}

async fn api(app: &Router, key: &str, method: &str, uri: &str, body: Value) -> Value {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::IF_MATCH, "\"1\"")
        .body(Body::from(body.to_string()))
        .expect("request");
    let (status, bytes) = call(app, req).await;
    assert!(
        status.is_success(),
        "{method} {uri}: {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn page(uri: &str, cookie: &str) -> Request<Body> {
    Request::builder()
        .uri(uri)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .expect("request")
}

fn iso(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("config.db").display());
    let store = switchyard_store::open(&url).await.expect("store");
    let boot = switchyard_store::bootstrap(store.as_ref(), false)
        .await
        .expect("bootstrap")
        .expect("admin key");
    let events_dir = tempfile::tempdir().expect("tempdir");
    let events = switchyard_events::Events::open(events_dir.path(), Default::default())
        .await
        .expect("event log");
    let mut agg = AggregationConfig::new(events_dir.path().join("aggregator"));
    agg.poll_interval = Duration::from_millis(5);
    let state = AppState::new(store.clone(), ServerConfig::default())
        .await
        .expect("state")
        .with_events(Arc::new(events))
        .with_aggregation(Aggregation::open(agg).expect("aggregator"));
    let app = switchyard_server::app(state.clone());
    let key = boot.admin_key_secret;

    api(
        &app,
        &key,
        "POST",
        "/api/v1/projects",
        json!({"key": "bench", "name": "Benchmark"}),
    )
    .await;
    for env in ["development", "production"] {
        api(
            &app,
            &key,
            "POST",
            "/api/v1/projects/bench/environments",
            json!({"key": env, "name": env}),
        )
        .await;
    }
    // The flags, straight into the store (the API would recompile the
    // project 1,000 times).
    for i in 0..FLAGS {
        let settings = json!({
            "enabled": i % 3 != 0,
            "off_variation": "off",
            "rules": [
                {"conditions": [{"attribute": "country", "op": "in", "value": ["NL", "BE"]}], "serve": {"variation": "on"}},
                {"conditions": [{"attribute": "plan", "op": "equals", "value": "pro"}],
                 "serve": {"split": {"weights": [{"variation": "on", "weight": 2000}, {"variation": "off", "weight": 8000}]}}}
            ],
            "fallthrough": {"variation": "off"}
        });
        let input: switchyard_store::FlagInput = serde_json::from_value(json!({
            "key": format!("flag-{i:04}"),
            "name": format!("Flag number {i}"),
            "description": "A flag of the benchmark",
            "type": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "tags": [format!("team-{}", i % 7)],
            "environments": {"development": settings, "production": settings}
        }))
        .expect("flag input");
        store
            .create_flag("system:bench", "bench", input)
            .await
            .expect("create flag");
    }

    // An experiment on 10 metrics with data for 2,000 units.
    let exp_flag: switchyard_store::FlagInput = serde_json::from_value(json!({
        "key": "exp-flag", "name": "Experiment flag", "type": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
    }))
    .expect("flag input");
    store
        .create_flag("system:bench", "bench", exp_flag)
        .await
        .expect("create flag");
    let mut metric_keys = Vec::new();
    for m in 0..METRICS {
        let kind = ["binomial", "count", "sum", "mean", "binomial"][m % 5];
        let metric = format!("metric-{m}");
        api(
            &app,
            &key,
            "POST",
            "/api/v1/projects/bench/metrics",
            json!({"key": metric, "name": format!("Metric {m}"), "kind": kind,
                "numerator": {"event": format!("event-{m}")}}),
        )
        .await;
        metric_keys.push(metric);
    }
    let base = "/api/v1/projects/bench/environments/production/experiments";
    api(
        &app,
        &key,
        "POST",
        base,
        json!({"key": "big-test", "flag": "exp-flag", "name": "Big test",
            "variations": [{"variation": "off", "weight": 5000}, {"variation": "on", "weight": 5000}],
            "metrics": metric_keys}),
    )
    .await;
    api(
        &app,
        &key,
        "POST",
        &format!("{base}/big-test/start"),
        json!({}),
    )
    .await;
    let created: Value = api(
        &app,
        &key,
        "POST",
        "/api/v1/api-keys",
        json!({"name": "bench sdk", "kind": "server", "project": "bench", "environment": "production"}),
    )
    .await;
    let sdk = created["secret"].as_str().expect("secret").to_string();
    let t0 = time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let mut events = Vec::new();
    for u in 0..UNITS {
        let arm = if u % 2 == 0 { "off" } else { "on" };
        events.push(
            json!({"id": format!("x-{u}"), "type": "exposure", "unit": format!("u-{u}"),
            "experiment": "big-test", "variation": arm, "time": iso(t0)}),
        );
        for m in 0..METRICS {
            if (u * 7 + m * 3) % 5 < 2 + (u % 2) {
                events.push(
                    json!({"id": format!("t-{u}-{m}"), "type": "track", "unit": format!("u-{u}"),
                    "name": format!("event-{m}"), "value": (u % 40) as f64 + 1.0,
                    "time": iso(t0 + time::Duration::seconds(2))}),
                );
            }
        }
    }
    for chunk in events.chunks(1_000) {
        let req = Request::builder()
            .method("POST")
            .uri("/api/v1/events")
            .header(header::AUTHORIZATION, format!("Bearer {sdk}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(Value::from(chunk.to_vec()).to_string()))
            .expect("request");
        let (status, body) = call(&app, req).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    }
    // The aggregator, as `serve` runs it; wait until it has every unit.
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let stream = state.events.as_ref().expect("events").stream().clone();
    let aggregation = state.aggregation.clone().expect("aggregation");
    tokio::spawn(aggregation.run(stream, store.clone(), rx));
    std::mem::forget(_tx);
    let results_uri = format!("{base}/big-test/results");
    let mut aggregated = 0;
    for _ in 0..600 {
        let req = Request::builder()
            .uri(&results_uri)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .expect("request");
        let (status, body) = call(&app, req).await;
        if status == StatusCode::OK {
            let r: Value = serde_json::from_slice(&body).expect("json");
            let units: u64 = r["variations"]
                .as_array()
                .map(|v| v.iter().filter_map(|x| x["units"].as_u64()).sum())
                .unwrap_or(0);
            aggregated = units as usize;
            if aggregated >= UNITS {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(aggregated, UNITS, "the aggregator did not catch up in 30 s");

    // A signed-in person: a session straight from the store.
    let user = store
        .create_user(
            "system:bench",
            switchyard_store::UserInput {
                email: "bench@example.com".into(),
                password: "a long enough password".into(),
                role: switchyard_store::Role::Admin,
                project: None,
            },
        )
        .await
        .expect("user");
    let session = store
        .create_session(&user.id, time::Duration::hours(1))
        .await
        .expect("session");
    Fixture {
        store,
        app,
        cookie: format!("sy_session={}", session.token),
        results_page: "/ui/p/bench/experiments/production/big-test".to_string(),
        _state: state,
        _dirs: (dir, events_dir),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let f = rt.block_on(fixture());
    println!(
        "embedded UI assets: {} bytes (CSS {}, script {})",
        switchyard_server::ui::assets::TOTAL_BYTES,
        switchyard_server::ui::assets::CSS.len(),
        switchyard_server::ui::assets::JS.len()
    );
    for (name, uri) in [
        ("flag list", "/ui/p/bench/flags".to_string()),
        ("results", f.results_page.clone()),
    ] {
        let (status, body) = rt.block_on(call(&f.app, page(&uri, &f.cookie)));
        assert_eq!(
            status,
            StatusCode::OK,
            "{name}: {}",
            String::from_utf8_lossy(&body)
        );
        println!("{name} page {uri}: {} bytes of HTML", body.len());
    }
    let mut g = c.benchmark_group("ui");
    g.sample_size(30);
    g.bench_function("flag_list_1000", |b| {
        b.to_async(&rt).iter(|| async {
            let (status, body) = call(&f.app, page("/ui/p/bench/flags", &f.cookie)).await;
            assert_eq!(status, StatusCode::OK);
            body
        });
    });
    // For comparison: the store read alone that the flag list needs.
    g.bench_function("store_list_flags_1000", |b| {
        b.to_async(&rt)
            .iter(|| async { f.store.list_flags("bench").await.expect("flags").len() });
    });
    g.bench_function("results_10_metrics", |b| {
        b.to_async(&rt).iter(|| async {
            let (status, body) = call(&f.app, page(&f.results_page, &f.cookie)).await;
            assert_eq!(status, StatusCode::OK);
            body
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
