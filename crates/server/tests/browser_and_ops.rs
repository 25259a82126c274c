//! What browsers, unauthenticated clients and operators see at the edges
//! of the API: CORS on the browser routes, `WWW-Authenticate` on every
//! 401, one error vocabulary for unreadable JSON, metrics that a client
//! cannot inflate, and `/metrics` kept from anonymous callers.

mod common;

use common::{Backend, TestServer, start, start_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_server::cors::CorsOrigins;
use switchyard_server::{AppState, ServerConfig};
use switchyard_store::{ApiKeyInput, ApiKeyKind, Role};

async fn key(server: &TestServer, kind: ApiKeyKind, project: Option<&str>) -> String {
    let environment = match kind {
        ApiKeyKind::Admin(_) => None,
        _ => Some("production".to_string()),
    };
    server
        .store
        .create_api_key(
            "test",
            ApiKeyInput {
                name: "k".into(),
                kind,
                project: project.map(str::to_string),
                environment,
            },
        )
        .await
        .expect("key")
        .secret
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

const APP: &str = "https://app.example.com";
const EVALUATE: &str = "/ofrep/v1/evaluate/flags/checkout-flow";

async fn preflight(server: &TestServer, path: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, format!("{}{path}", server.url))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

/// Whether a preflight answer lets the browser send `method` with these
/// request headers, as the Fetch standard's CORS check does.
fn preflight_allows(r: &reqwest::Response, origin: &str, method: &str, headers: &[&str]) -> bool {
    let list = |name| {
        header(r, name)
            .unwrap_or("")
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let origin_ok =
        matches!(header(r, "access-control-allow-origin"), Some(o) if o == "*" || o == origin);
    r.status().is_success()
        && origin_ok
        && list("access-control-allow-methods").contains(&method.to_ascii_lowercase())
        && headers
            .iter()
            .all(|h| list("access-control-allow-headers").contains(&h.to_string()))
}

#[tokio::test]
async fn a_web_page_on_another_origin_can_evaluate_with_a_client_key() {
    let server = start(Backend::Sqlite).await;
    let client_key = key(&server, ApiKeyKind::Client, Some("demo")).await;
    // The browser's preflight, as it sends it for a JSON POST with a key.
    let pre = preflight(&server, EVALUATE, APP).await;
    assert_eq!(pre.status(), StatusCode::NO_CONTENT);
    assert!(
        preflight_allows(&pre, APP, "POST", &["authorization", "content-type"]),
        "{:?}",
        pre.headers()
    );
    assert!(header(&pre, "access-control-max-age").is_some());
    // Then the request itself, with its Origin.
    let r = reqwest::Client::new()
        .post(format!("{}{EVALUATE}", server.url))
        .header("origin", APP)
        .bearer_auth(&client_key)
        .json(&json!({"context": {"targetingKey": "user-1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["key"], "checkout-flow");
    // Bulk evaluation exposes its ETag to the page's script.
    let r = reqwest::Client::new()
        .post(format!("{}/ofrep/v1/evaluate/flags", server.url))
        .header("origin", APP)
        .bearer_auth(&client_key)
        .json(&json!({"context": {"targetingKey": "user-1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        header(&r, "access-control-expose-headers")
            .unwrap()
            .contains("etag")
    );
    // Event ingestion and the SDK routes too.
    for path in ["/api/v1/events", "/sdk/v1/config"] {
        let pre = preflight(&server, path, APP).await;
        assert_eq!(pre.status(), StatusCode::NO_CONTENT, "{path}");
    }
    // A request without Origin (a server-side SDK) gets no CORS headers.
    let r = reqwest::Client::new()
        .post(format!("{}{EVALUATE}", server.url))
        .bearer_auth(&client_key)
        .json(&json!({"context": {"targetingKey": "user-1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    server.stop().await;
}

#[tokio::test]
async fn with_an_origin_list_only_listed_origins_pass_the_preflight() {
    let config = ServerConfig {
        cors: format!("{APP}, http://localhost:3000").parse().unwrap(),
        ..ServerConfig::default()
    };
    let server = start_with(Backend::Sqlite, config).await;
    let client_key = key(&server, ApiKeyKind::Client, Some("demo")).await;
    let pre = preflight(&server, EVALUATE, "http://localhost:3000").await;
    assert!(preflight_allows(
        &pre,
        "http://localhost:3000",
        "POST",
        &["authorization", "content-type"]
    ));
    assert_eq!(
        header(&pre, "access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    let pre = preflight(&server, EVALUATE, "https://evil.example").await;
    assert_eq!(pre.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&pre, "access-control-allow-origin"), None);
    let body: Value = pre.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    // The actual response names the listed origin and varies by Origin.
    let r = reqwest::Client::new()
        .post(format!("{}{EVALUATE}", server.url))
        .header("origin", APP)
        .bearer_auth(&client_key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), Some(APP));
    assert!(header(&r, "vary").unwrap().contains("origin"));
    // Off: no CORS at all.
    let config = ServerConfig {
        cors: CorsOrigins::Off,
        ..ServerConfig::default()
    };
    let off = start_with(Backend::Sqlite, config).await;
    let pre = preflight(&off, EVALUATE, APP).await;
    assert_eq!(header(&pre, "access-control-allow-origin"), None);
    assert!(!pre.status().is_success());
    off.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn the_control_api_and_metrics_get_no_cors_headers() {
    let server = start(Backend::Sqlite).await;
    for path in [
        "/api/v1/projects",
        "/api/v1/events/dead-letters",
        "/metrics",
    ] {
        let pre = preflight(&server, path, APP).await;
        assert_eq!(
            header(&pre, "access-control-allow-origin"),
            None,
            "{path}: {:?}",
            pre.headers()
        );
        assert!(!pre.status().is_success(), "{path}");
        let r = reqwest::Client::new()
            .get(format!("{}{path}", server.url))
            .header("origin", APP)
            .bearer_auth(&server.admin_key)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "access-control-allow-origin"), None, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn every_401_names_the_bearer_scheme() {
    let server = start(Backend::Sqlite).await;
    let cases = [
        (Method::GET, "/api/v1/projects"),
        (Method::POST, EVALUATE),
        (Method::POST, "/ofrep/v1/evaluate/flags"),
        (Method::GET, "/sdk/v1/config"),
        (Method::POST, "/api/v1/events"),
        (Method::GET, "/metrics"),
    ];
    for (method, path) in cases {
        for secret in [None, Some("sy_not_a_key")] {
            let mut req =
                reqwest::Client::new().request(method.clone(), format!("{}{path}", server.url));
            if let Some(s) = secret {
                req = req.bearer_auth(s);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path}");
            assert_eq!(
                header(&r, "www-authenticate"),
                Some("Bearer realm=\"switchyard\""),
                "{method} {path}"
            );
        }
    }
    server.stop().await;
}

/// One request with a raw JSON body; the answer's status and error code.
async fn send_raw(
    server: &TestServer,
    method: Method,
    path: &str,
    key: &str,
    if_match: Option<&str>,
    body: &'static str,
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body);
    if let Some(v) = if_match {
        req = req.header("if-match", v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"]
        .as_str()
        .or(body["errorCode"].as_str())
        .unwrap_or("")
        .to_string();
    (status, code)
}

#[tokio::test]
async fn unreadable_json_is_invalid_json_and_misshapen_json_invalid_body_on_every_route() {
    let server = start(Backend::Sqlite).await;
    let admin = server.admin_key.clone();
    let server_key = key(&server, ApiKeyKind::Server, Some("demo")).await;
    let exp = "/api/v1/projects/demo/environments/production/experiments/checkout-test";
    let version = reqwest::Client::new()
        .get(format!("{}{exp}", server.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .headers()
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let flag = "/api/v1/projects/demo/flags/checkout-flow";
    let flag_version = reqwest::Client::new()
        .get(format!("{}{flag}", server.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .headers()
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let stop = format!("{exp}/stop");
    let kill_switch = format!("{flag}/environments/production");
    // (method, path, key, If-Match, a body of the wrong shape)
    let routes: Vec<(Method, &str, &str, Option<&str>, &'static str)> = vec![
        (
            Method::POST,
            "/api/v1/projects",
            &admin,
            None,
            r#"{"key": 5}"#,
        ),
        (
            Method::PATCH,
            &kill_switch,
            &admin,
            Some(&flag_version),
            r#"{"enabled": "yes"}"#,
        ),
        (
            Method::POST,
            &stop,
            &admin,
            Some(&version),
            r#"{"winner": 5}"#,
        ),
        (
            Method::POST,
            "/api/v1/events/dead-letters/replay",
            &admin,
            None,
            r#"{"from": "x"}"#,
        ),
        (
            Method::POST,
            "/api/v1/events",
            &server_key,
            None,
            r#"{"events": 5}"#,
        ),
    ];
    for (method, path, key, if_match, misshapen) in &routes {
        for broken in ["{", "{not json}", "\u{1}"] {
            let got = send_raw(&server, method.clone(), path, key, *if_match, broken).await;
            assert_eq!(
                got,
                (400, "invalid_json".to_string()),
                "{method} {path} {broken:?}"
            );
        }
        let got = send_raw(&server, method.clone(), path, key, *if_match, misshapen).await;
        assert_eq!(got.0, 400, "{method} {path} {misshapen}: {got:?}");
        assert_ne!(got.1, "invalid_json", "{method} {path} {misshapen}");
        assert!(
            ["invalid_body", "invalid_field"].contains(&got.1.as_str()),
            "{method} {path} {misshapen}: {got:?}"
        );
    }
    // OFREP keeps its protocol's own code.
    let got = send_raw(
        &server,
        Method::POST,
        EVALUATE,
        &server_key,
        None,
        r#"{"context": "#,
    )
    .await;
    assert_eq!(got, (400, "PARSE_ERROR".to_string()));
    server.stop().await;
}

#[tokio::test]
async fn invented_methods_and_paths_add_no_metric_series() {
    let server = start(Backend::Sqlite).await;
    let client = reqwest::Client::new();
    for i in 0..200 {
        let method = Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        let path = match i % 3 {
            0 => format!("/made/up/{i}"),
            1 => format!("/ofrep/v1/evaluate/flags/flag-{i}"),
            _ => format!("/api/v1/projects/p{i}/flags"),
        };
        let r = client
            .request(method, format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{path}: {}", r.status());
    }
    let metrics = server.state.metrics.encode();
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("switchyard_http_requests_total{"))
        .collect();
    assert!(series.len() <= 6, "{series:#?}");
    assert!(!metrics.contains("INVENTED"), "{metrics}");
    assert!(!metrics.contains("p1"), "a path leaked into a label");
    for line in &series {
        assert!(line.contains("method=\"other\""), "{line}");
    }
    let histograms = metrics
        .lines()
        .filter(|l| l.starts_with("switchyard_http_request_duration_seconds_count{"))
        .count();
    assert!(histograms <= 3, "{metrics}");
    server.stop().await;
}

/// One OFREP evaluation, so that the environment's flags get their series.
async fn evaluate_once(base: &str, key: &str) {
    let r = reqwest::Client::new()
        .post(format!("{base}{EVALUATE}"))
        .bearer_auth(key)
        .json(&json!({"context": {"targetingKey": "u"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn metrics_on_the_api_listener_need_an_organisation_wide_admin_key() {
    let server = start(Backend::Sqlite).await;
    let get = |secret: Option<String>| {
        let url = format!("{}/metrics", server.url);
        async move {
            let mut req = reqwest::Client::new().get(url);
            if let Some(s) = secret {
                req = req.bearer_auth(s);
            }
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    evaluate_once(
        &server.url,
        &key(&server, ApiKeyKind::Server, Some("demo")).await,
    )
    .await;
    let (status, text) = get(None).await;
    assert_eq!(status, 401);
    assert!(!text.contains("checkout-flow"), "{text}");
    for kind in [ApiKeyKind::Client, ApiKeyKind::Server] {
        let k = key(&server, kind, Some("demo")).await;
        assert_eq!(get(Some(k)).await.0, 403, "{kind:?}");
    }
    let bound = key(&server, ApiKeyKind::Admin(Role::Admin), Some("demo")).await;
    assert_eq!(get(Some(bound)).await.0, 403, "a project-bound admin key");
    let viewer = key(&server, ApiKeyKind::Admin(Role::Viewer), None).await;
    let (status, text) = get(Some(viewer)).await;
    assert_eq!(status, 200);
    assert!(text.contains("switchyard_flag_evaluations_total"), "{text}");
    assert!(text.contains("checkout-flow"), "{text}");
    // Health and readiness stay open.
    for path in ["/healthz", "/readyz"] {
        let r = reqwest::get(format!("{}{path}", server.url)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_operations_listener_serves_metrics_without_a_key_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("config.db").display());
    let store = switchyard_store::open(&url).await.unwrap();
    let boot = switchyard_store::bootstrap(store.as_ref(), true)
        .await
        .unwrap()
        .unwrap();
    let sdk_key = store
        .create_api_key(
            "test",
            ApiKeyInput {
                name: "k".into(),
                kind: ApiKeyKind::Server,
                project: Some("demo".into()),
                environment: Some("production".into()),
            },
        )
        .await
        .unwrap()
        .secret;
    let state = AppState::new(store, ServerConfig::default()).await.unwrap();
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_url = format!("http://{}", api.local_addr().unwrap());
    let ops_url = format!("http://{}", ops.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(switchyard_server::run_with_ops(
        api,
        Some(ops),
        state,
        async {
            let _ = rx.await;
        },
    ));
    evaluate_once(&api_url, &sdk_key).await;
    let r = reqwest::get(format!("{ops_url}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("checkout-flow"), "{text}");
    for path in ["/healthz", "/readyz"] {
        let r = reqwest::get(format!("{ops_url}{path}")).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // The API is not served there, even with a key.
    for path in ["/api/v1/projects", EVALUATE, "/sdk/v1/config"] {
        let r = reqwest::Client::new()
            .get(format!("{ops_url}{path}"))
            .bearer_auth(&boot.admin_key_secret)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    // The API listener still needs a key for its /metrics.
    let r = reqwest::get(format!("{api_url}/metrics")).await.unwrap();
    assert_eq!(r.status(), 401);
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}
