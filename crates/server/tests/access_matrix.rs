//! Who may call what: every control-plane route against every kind of
//! caller, as one table of expected statuses.
//!
//! Columns: no key, viewer, editor, admin (the bootstrap key), an admin key
//! bound to another project, a server SDK key and a client SDK key (both of
//! `demo/production`). Changes to existing resources carry a stale
//! `If-Match`, so a caller who passes the access check gets 412 and
//! nothing changes; creations use a key per caller so each allowed one gets
//! 201. `{k}` in a path or body is the caller's column name, `{victim}` an
//! API key made for that caller to revoke.

mod common;

use std::collections::BTreeMap;

use common::{Backend, TestServer, start};
use reqwest::Method;
use serde_json::{Value, json};

const CALLERS: [&str; 7] = [
    "none", "viewer", "editor", "admin", "other", "server", "client",
];

/// Read a project-scoped resource of `demo`.
const R: [u16; 7] = [401, 200, 200, 200, 403, 403, 403];
/// Change (stale If-Match) a resource editors may change.
const W: [u16; 7] = [401, 403, 412, 412, 403, 403, 403];
/// Create a resource editors may create.
const C: [u16; 7] = [401, 403, 201, 201, 403, 403, 403];
/// Change (stale If-Match) a resource only admins may change.
const AW: [u16; 7] = [401, 403, 403, 412, 403, 403, 403];

const STALE: &str = "\"999\"";

fn rows() -> Vec<(Method, &'static str, Option<Value>, [u16; 7])> {
    let flag = json!({"key": "f-{k}", "name": "F", "type": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]});
    let flag_put = json!({"name": "F", "type": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]});
    let settings =
        json!({"enabled": true, "off_variation": "off", "fallthrough": {"variation": "on"}});
    let experiment = json!({"key": "x-{k}", "flag": "checkout-flow", "name": "X",
        "variations": [{"variation": "classic", "weight": 5000}, {"variation": "one-page", "weight": 5000}]});
    let exp_put = json!({"flag": "checkout-flow", "name": "X",
        "variations": [{"variation": "classic", "weight": 5000}, {"variation": "one-page", "weight": 5000}]});
    // One call: a running experiment with its new flag.
    let one_call = json!({"key": "y-{k}", "name": "Y", "start": true,
        "flag": {"key": "fy-{k}", "name": "FY", "type": "string",
            "variations": [{"key": "a", "value": "A"}, {"key": "b", "value": "B"}]},
        "variations": [{"variation": "a", "weight": 5000}, {"variation": "b", "weight": 5000}]});
    use Method as M;
    vec![
        (M::GET, "/openapi.json", None, [200; 7]),
        (
            M::GET,
            "/projects",
            None,
            [401, 200, 200, 200, 200, 403, 403],
        ),
        (
            M::POST,
            "/projects",
            Some(json!({"key": "p-{k}", "name": "P"})),
            [401, 403, 403, 201, 403, 403, 403],
        ),
        (M::GET, "/projects/demo", None, R),
        (
            M::GET,
            "/projects/other",
            None,
            [401, 200, 200, 200, 200, 403, 403],
        ),
        (M::PATCH, "/projects/demo", Some(json!({"name": "D"})), AW),
        (
            M::PATCH,
            "/projects/other",
            Some(json!({"name": "O"})),
            [401, 403, 403, 412, 412, 403, 403],
        ),
        (M::DELETE, "/projects/demo", None, AW),
        (M::GET, "/projects/demo/environments", None, R),
        (
            M::POST,
            "/projects/demo/environments",
            Some(json!({"key": "e-{k}", "name": "E"})),
            C,
        ),
        (M::GET, "/projects/demo/environments/production", None, R),
        (
            M::PATCH,
            "/projects/demo/environments/production",
            Some(json!({"name": "P"})),
            W,
        ),
        (M::DELETE, "/projects/demo/environments/production", None, W),
        (M::GET, "/projects/demo/flags", None, R),
        (M::POST, "/projects/demo/flags", Some(flag), C),
        (M::GET, "/projects/demo/flags/new-search", None, R),
        (M::PUT, "/projects/demo/flags/new-search", Some(flag_put), W),
        (M::DELETE, "/projects/demo/flags/new-search", None, W),
        (
            M::PUT,
            "/projects/demo/flags/new-search/environments/production",
            Some(settings),
            W,
        ),
        (
            M::PATCH,
            "/projects/demo/flags/new-search/environments/production",
            Some(json!({"enabled": false})),
            W,
        ),
        (M::GET, "/projects/demo/segments", None, R),
        (
            M::POST,
            "/projects/demo/segments",
            Some(json!({"key": "s-{k}", "name": "S"})),
            C,
        ),
        (M::GET, "/projects/demo/segments/beta-testers", None, R),
        (
            M::PUT,
            "/projects/demo/segments/beta-testers",
            Some(json!({"name": "B"})),
            W,
        ),
        (M::DELETE, "/projects/demo/segments/beta-testers", None, W),
        (M::GET, "/projects/demo/metrics", None, R),
        (
            M::POST,
            "/projects/demo/metrics",
            Some(json!({"key": "m-{k}", "kind": "count", "numerator": {"event": "e"}})),
            C,
        ),
        (M::GET, "/projects/demo/metrics/revenue", None, R),
        (
            M::PUT,
            "/projects/demo/metrics/revenue",
            Some(json!({"kind": "sum", "numerator": {"event": "purchase"}})),
            W,
        ),
        (M::DELETE, "/projects/demo/metrics/revenue", None, W),
        (
            M::GET,
            "/projects/demo/environments/production/experiments",
            None,
            R,
        ),
        (
            M::POST,
            "/projects/demo/environments/production/experiments",
            Some(experiment),
            C,
        ),
        (
            M::GET,
            "/projects/demo/environments/production/experiments/checkout-test",
            None,
            R,
        ),
        (
            M::PUT,
            "/projects/demo/environments/production/experiments/checkout-test",
            Some(exp_put),
            W,
        ),
        (
            M::DELETE,
            "/projects/demo/environments/production/experiments/checkout-test",
            None,
            W,
        ),
        (
            M::POST,
            "/projects/demo/environments/production/experiments/checkout-test/start",
            None,
            W,
        ),
        (
            M::POST,
            "/projects/demo/environments/production/experiments/checkout-test/stop",
            None,
            W,
        ),
        // Replay (routes/results.rs): editors start one, viewers read its
        // progress. This server runs no aggregator, so an allowed start is
        // a 503 and there is no progress to read (404).
        (
            M::POST,
            "/projects/demo/environments/production/experiments/checkout-test/replay",
            None,
            [401, 403, 503, 503, 403, 403, 403],
        ),
        (
            M::GET,
            "/projects/demo/environments/production/experiments/checkout-test/replay",
            None,
            [401, 404, 404, 404, 403, 403, 403],
        ),
        (
            M::POST,
            "/projects/demo/environments/production/experiments/checkout-test/pause",
            None,
            W,
        ),
        (
            M::POST,
            "/projects/demo/environments/production/experiments/checkout-test/resume",
            None,
            W,
        ),
        (
            M::POST,
            "/projects/demo/environments/production/experiments/checkout-test/ship",
            Some(json!({"variation": "classic"})),
            W,
        ),
        (
            M::POST,
            "/projects/demo/environments/production/experiments/checkout-test/restart",
            Some(json!({"reshuffle": true})),
            W,
        ),
        (
            M::POST,
            "/projects/demo/environments/production/experiments",
            Some(one_call),
            C,
        ),
        (
            M::GET,
            "/projects/demo/environments/production/holdouts",
            None,
            R,
        ),
        (
            M::POST,
            "/projects/demo/environments/production/holdouts",
            Some(json!({"key": "h-{k}", "size": 100})),
            C,
        ),
        (
            M::GET,
            "/projects/demo/environments/production/holdouts/base",
            None,
            R,
        ),
        (
            M::PUT,
            "/projects/demo/environments/production/holdouts/base",
            Some(json!({"size": 200})),
            W,
        ),
        (
            M::DELETE,
            "/projects/demo/environments/production/holdouts/base",
            None,
            W,
        ),
        (
            M::GET,
            "/api-keys",
            None,
            [401, 403, 403, 200, 200, 403, 403],
        ),
        (
            M::POST,
            "/api-keys",
            Some(json!({"name": "k-{k}", "kind": {"admin": "viewer"}, "project": "demo"})),
            [401, 403, 403, 201, 403, 403, 403],
        ),
        (
            M::POST,
            "/api-keys",
            Some(
                json!({"name": "k-{k}", "kind": "client", "project": "other", "environment": "live"}),
            ),
            [401, 403, 403, 201, 201, 403, 403],
        ),
        (
            M::GET,
            "/api-keys/{victim}",
            None,
            [401, 403, 403, 200, 403, 403, 403],
        ),
        (
            M::DELETE,
            "/api-keys/{victim}",
            None,
            [401, 403, 403, 200, 403, 403, 403],
        ),
        // People: organisation-wide admins only.
        (M::GET, "/users", None, [401, 403, 403, 200, 403, 403, 403]),
        (
            M::POST,
            "/users",
            Some(
                json!({"email": "u-{k}@example.com", "password": "long enough secret", "role": "viewer"}),
            ),
            [401, 403, 403, 201, 403, 403, 403],
        ),
        (
            M::DELETE,
            "/users/nobody@example.com",
            None,
            [401, 403, 403, 404, 403, 403, 403],
        ),
        (M::GET, "/audit", None, [401, 200, 200, 200, 200, 403, 403]),
        (M::GET, "/audit?project=demo", None, R),
        (
            M::GET,
            "/audit?project=other",
            None,
            [401, 200, 200, 200, 200, 403, 403],
        ),
        // Raw events hold units and attributes: editors and up.
        (
            M::GET,
            "/events/export?project=demo&environment=production",
            None,
            [401, 403, 200, 200, 403, 403, 403],
        ),
    ]
}

async fn make_key(client: &reqwest::Client, server: &TestServer, body: Value) -> (String, String) {
    let r = client
        .post(format!("{}/api/v1/api-keys", server.url))
        .bearer_auth(&server.admin_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{body}");
    let made: Value = r.json().await.unwrap();
    (
        made["secret"].as_str().unwrap().to_string(),
        made["id"].as_str().unwrap().to_string(),
    )
}

async fn setup(
    server: &TestServer,
    client: &reqwest::Client,
) -> (
    BTreeMap<&'static str, String>,
    BTreeMap<&'static str, String>,
) {
    let admin = |m: Method, path: &str| {
        client
            .request(m, format!("{}/api/v1{path}", server.url))
            .bearer_auth(&server.admin_key)
    };
    let r = admin(Method::POST, "/projects")
        .json(&json!({"key": "other", "name": "Other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = admin(Method::POST, "/projects/other/environments")
        .json(&json!({"key": "live", "name": "Live"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = admin(
        Method::POST,
        "/projects/demo/environments/production/holdouts",
    )
    .json(&json!({"key": "base", "size": 100}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 201);

    let mut keys = BTreeMap::new();
    keys.insert("admin", server.admin_key.clone());
    for (caller, body) in [
        (
            "viewer",
            json!({"name": "viewer", "kind": {"admin": "viewer"}}),
        ),
        (
            "editor",
            json!({"name": "editor", "kind": {"admin": "editor"}}),
        ),
        (
            "other",
            json!({"name": "other", "kind": {"admin": "admin"}, "project": "other"}),
        ),
        (
            "server",
            json!({"name": "server", "kind": "server", "project": "demo", "environment": "production"}),
        ),
        (
            "client",
            json!({"name": "client", "kind": "client", "project": "demo", "environment": "production"}),
        ),
    ] {
        keys.insert(caller, make_key(client, server, body).await.0);
    }
    let mut victims = BTreeMap::new();
    for caller in CALLERS {
        let body = json!({"name": format!("victim-{caller}"), "kind": "server", "project": "demo", "environment": "production"});
        victims.insert(caller, make_key(client, server, body).await.1);
    }
    (keys, victims)
}

async fn run_matrix(backend: Backend) {
    let server = start(backend).await;
    let client = reqwest::Client::new();
    let (keys, victims) = setup(&server, &client).await;
    let mut failures = Vec::new();
    let mut checked = 0;
    for (method, path, body, expected) in rows() {
        for (caller, want) in CALLERS.iter().zip(expected) {
            let path = path
                .replace("{k}", caller)
                .replace("{victim}", &victims[caller]);
            let mut req = client.request(method.clone(), format!("{}/api/v1{path}", server.url));
            if let Some(secret) = keys.get(caller) {
                req = req.bearer_auth(secret);
            }
            if matches!(method, Method::PUT | Method::PATCH | Method::DELETE)
                || ["/start", "/stop", "/pause", "/resume", "/ship", "/restart"]
                    .iter()
                    .any(|step| path.ends_with(step))
            {
                req = req.header("If-Match", STALE);
            }
            if let Some(b) = &body {
                let text = b.to_string().replace("{k}", caller);
                req = req.header("content-type", "application/json").body(text);
            }
            let r = req.send().await.unwrap();
            let got = r.status().as_u16();
            checked += 1;
            if got != want {
                let text = r.text().await.unwrap_or_default();
                failures.push(format!(
                    "{method} {path} as {caller}: want {want}, got {got} {text}"
                ));
            } else if got >= 400 {
                let err: Value = r.json().await.unwrap();
                assert!(
                    err["error"]["code"].is_string(),
                    "{method} {path} as {caller}: {err}"
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{backend:?}: {} of {checked} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The stale If-Match kept everything as it was.
    let demo = client
        .get(format!("{}/api/v1/projects/demo", server.url))
        .bearer_auth(&server.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(demo.headers()["etag"], "\"1\"");
    server.stop().await;
}

#[tokio::test]
async fn every_route_answers_each_kind_of_key_as_the_matrix_says_on_sqlite() {
    run_matrix(Backend::Sqlite).await;
}

#[tokio::test]
async fn every_route_answers_each_kind_of_key_as_the_matrix_says_on_postgres() {
    run_matrix(Backend::Postgres).await;
}
