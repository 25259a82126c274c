//! The server's own cost per request, without the network: a request is
//! handed to the router (`tower::ServiceExt::oneshot`) and its body read,
//! on a current-thread runtime. This isolates what our code and axum spend
//! from what the kernel spends on loopback TCP, which dominates
//! `bench/http.sh`; the same three requests as that script:
//!
//! - `GET /healthz`, the trivial endpoint;
//! - `POST /ofrep/v1/evaluate/flags/bench-flag-00`, a five-rule flag whose
//!   fifth rule (a split) serves the context;
//! - `POST /ofrep/v1/evaluate/flags`, 20 such flags.
//!
//! `cargo bench -p switchyard-server --bench requests`

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use switchyard_server::{AppState, ServerConfig};
use tower::ServiceExt;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONTEXT: &str = r#"{"context": {"targetingKey": "user-48213", "email": "someone@customer.org", "country": "US", "age": 34, "app_version": "2.4.1", "plan": "pro"}}"#;

struct Fixture {
    app: Router,
    sdk_key: String,
    _dir: tempfile::TempDir,
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, bytes::Bytes) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, body)
}

fn admin(method: &str, uri: &str, key: &str, body: serde_json::Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("config.db").display());
    let store = switchyard_store::open(&url).await.expect("store");
    let boot = switchyard_store::bootstrap(store.as_ref(), false)
        .await
        .expect("bootstrap")
        .expect("admin key");
    let config = ServerConfig {
        rate_limit_per_key: 0,
        ..ServerConfig::default()
    };
    let state: AppState = AppState::new(store, config).await.expect("state");
    let app = switchyard_server::app(state.clone());
    let key = boot.admin_key_secret;
    let ok = |(status, body): (StatusCode, bytes::Bytes)| {
        assert!(status.is_success(), "{status}: {body:?}");
        body
    };
    ok(call(
        &app,
        admin(
            "POST",
            "/api/v1/projects",
            &key,
            json!({"key": "bench", "name": "Benchmark"}),
        ),
    )
    .await);
    ok(call(
        &app,
        admin(
            "POST",
            "/api/v1/projects/bench/environments",
            &key,
            json!({"key": "production", "name": "Production"}),
        ),
    )
    .await);
    for i in 0..20 {
        let flag = json!({
            "key": format!("bench-flag-{i:02}"), "name": "bench", "type": "string",
            "variations": [{"key": "a", "value": "A"}, {"key": "b", "value": "B"}, {"key": "c", "value": "C"}],
            "environments": {"production": {"enabled": true, "off_variation": "a",
                "rules": [
                    {"conditions": [{"attribute": "email", "op": "ends_with", "value": "@example.com"}], "serve": {"variation": "b"}},
                    {"conditions": [{"attribute": "country", "op": "in", "value": ["DE", "FR", "NL", "SE", "NO"]}], "serve": {"variation": "c"}},
                    {"conditions": [{"attribute": "age", "op": "gte", "value": 65}], "serve": {"variation": "b"}},
                    {"conditions": [{"attribute": "app_version", "op": "semver_lt", "value": "2.0.0"}], "serve": {"variation": "a"}},
                    {"conditions": [{"attribute": "plan", "op": "equals", "value": "pro"}],
                     "serve": {"split": {"weights": [{"variation": "b", "weight": 5000}, {"variation": "c", "weight": 5000}]}}}],
                "fallthrough": {"variation": "a"}}}
        });
        ok(call(
            &app,
            admin("POST", "/api/v1/projects/bench/flags", &key, flag),
        )
        .await);
    }
    let body = ok(call(
        &app,
        admin(
            "POST",
            "/api/v1/api-keys",
            &key,
            json!({"name": "bench", "kind": "server", "project": "bench", "environment": "production"}),
        ),
    )
    .await);
    let created: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let sdk_key = created["secret"].as_str().expect("secret").to_string();
    // Nothing follows store notifications here: load the snapshots now.
    state.snapshots.reload_all().await.expect("reload");
    Fixture {
        app,
        sdk_key,
        _dir: dir,
    }
}

fn ofrep(path: &str, sdk_key: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {sdk_key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(CONTEXT))
        .expect("request")
}

fn requests(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fx = rt.block_on(fixture());
    let (status, body) = rt.block_on(call(
        &fx.app,
        ofrep("/ofrep/v1/evaluate/flags/bench-flag-00", &fx.sdk_key),
    ));
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert!(
        std::str::from_utf8(&body)
            .expect("utf-8")
            .contains("\"SPLIT\""),
        "{body:?}"
    );

    let mut g = c.benchmark_group("request");
    g.bench_function("healthz", |b| {
        b.to_async(&rt).iter(|| async {
            let req = Request::get("/healthz").body(Body::empty()).expect("req");
            let (status, _) = call(&fx.app, req).await;
            assert_eq!(status, StatusCode::OK);
        })
    });
    g.bench_function("ofrep_single", |b| {
        b.to_async(&rt).iter(|| async {
            let req = ofrep("/ofrep/v1/evaluate/flags/bench-flag-00", &fx.sdk_key);
            let (status, _) = call(&fx.app, req).await;
            assert_eq!(status, StatusCode::OK);
        })
    });
    g.bench_function("ofrep_bulk_20", |b| {
        b.to_async(&rt).iter(|| async {
            let req = ofrep("/ofrep/v1/evaluate/flags", &fx.sdk_key);
            let (status, _) = call(&fx.app, req).await;
            assert_eq!(status, StatusCode::OK);
        })
    });
    g.finish();
}

criterion_group!(benches, requests);
criterion_main!(benches);
