//! The control-plane API over real HTTP, on SQLite and on PostgreSQL:
//! CRUD, versions (ETag, If-Match: 428, 412, 409), the audit log,
//! validation errors naming the field, and 422 for what the evaluator
//! rejects.

mod common;

use common::{BACKENDS, TestServer, start};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Api {
    fn new(server: &TestServer) -> Api {
        Api {
            base: format!("{}/api/v1", server.url),
            key: server.admin_key.clone(),
            http: reqwest::Client::new(),
        }
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }

    async fn get(&self, path: &str) -> Response {
        self.req(Method::GET, path).send().await.unwrap()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        if_match: Option<&str>,
        body: Value,
    ) -> Response {
        let mut r = self.req(method, path).json(&body);
        if let Some(v) = if_match {
            r = r.header("If-Match", v);
        }
        r.send().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Response {
        self.send(Method::POST, path, None, body).await
    }

    async fn audit_len(&self) -> usize {
        let r = self.get("/audit?limit=1000").await;
        r.json::<Vec<Value>>().await.unwrap().len()
    }
}

fn etag(r: &Response) -> String {
    r.headers()
        .get("etag")
        .expect("response has an ETag")
        .to_str()
        .unwrap()
        .to_string()
}

async fn error_of(r: Response, status: StatusCode) -> Value {
    assert_eq!(r.status(), status);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"].clone()
}

fn bool_flag(key: &str) -> Value {
    json!({
        "key": key, "name": "A flag", "type": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "environments": {"production": {
            "enabled": true, "off_variation": "off", "fallthrough": {"variation": "on"}}}
    })
}

#[tokio::test]
async fn projects_and_environments_are_created_read_renamed_and_deleted_with_versions() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let api = Api::new(&server);

        let r = api
            .post("/projects", json!({"key": "shop", "name": "Shop"}))
            .await;
        assert_eq!(r.status(), 201, "{backend:?}");
        assert_eq!(r.headers()["location"], "/api/v1/projects/shop");
        assert_eq!(etag(&r), "\"1\"");
        let r = api
            .post("/projects", json!({"key": "shop", "name": "Again"}))
            .await;
        assert_eq!(error_of(r, StatusCode::CONFLICT).await["code"], "conflict");

        let r = api.get("/projects").await;
        let keys: Vec<String> = r
            .json::<Vec<Value>>()
            .await
            .unwrap()
            .iter()
            .map(|p| p["key"].as_str().unwrap().to_string())
            .collect();
        assert!(
            keys.contains(&"shop".to_string()) && keys.contains(&"demo".to_string()),
            "{keys:?}"
        );

        let r = api.get("/projects/shop").await;
        assert_eq!(r.status(), 200);
        assert_eq!(etag(&r), "\"1\"");

        let rename = json!({"name": "The Shop"});
        let r = api
            .send(Method::PATCH, "/projects/shop", None, rename.clone())
            .await;
        assert_eq!(
            error_of(r, StatusCode::PRECONDITION_REQUIRED).await["code"],
            "if_match_required"
        );
        let r = api
            .send(
                Method::PATCH,
                "/projects/shop",
                Some("\"9\""),
                rename.clone(),
            )
            .await;
        assert_eq!(
            error_of(r, StatusCode::PRECONDITION_FAILED).await["code"],
            "version_mismatch"
        );
        let r = api
            .send(
                Method::PATCH,
                "/projects/shop",
                Some("nine"),
                rename.clone(),
            )
            .await;
        assert_eq!(
            error_of(r, StatusCode::BAD_REQUEST).await["field"],
            "If-Match"
        );
        let r = api
            .send(
                Method::PATCH,
                "/projects/shop",
                Some("\"1\""),
                rename.clone(),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(etag(&r), "\"2\"");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["name"], "The Shop");
        // The second writer, still holding version 1, cannot overwrite.
        let r = api
            .send(
                Method::PATCH,
                "/projects/shop",
                Some("\"1\""),
                json!({"name": "Mine"}),
            )
            .await;
        assert_eq!(r.status(), 412);

        let r = api
            .post(
                "/projects/shop/environments",
                json!({"key": "staging", "name": "Staging"}),
            )
            .await;
        assert_eq!(r.status(), 201);
        assert_eq!(
            r.headers()["location"],
            "/api/v1/projects/shop/environments/staging"
        );
        let r = api.get("/projects/shop/environments/staging").await;
        assert_eq!(etag(&r), "\"1\"");
        let r = api
            .send(
                Method::PATCH,
                "/projects/shop/environments/staging",
                Some("\"1\""),
                json!({"name": "Pre-production"}),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(etag(&r), "\"2\"");
        let r = api.get("/projects/shop/environments").await;
        let envs: Vec<Value> = r.json().await.unwrap();
        assert_eq!(envs.len(), 1);
        assert_eq!(envs[0]["name"], "Pre-production");
        assert_eq!(api.get("/projects/nope/environments").await.status(), 404);
        assert_eq!(
            api.get("/projects/shop/environments/nope").await.status(),
            404
        );
        let r = api
            .post(
                "/projects/nope/environments",
                json!({"key": "x", "name": "X"}),
            )
            .await;
        assert_eq!(r.status(), 404);

        // A key bound to the environment dies with it, at once.
        let r = api
            .post(
                "/api-keys",
                json!({"name": "sdk", "kind": "server", "project": "shop", "environment": "staging"}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let sdk = r.json::<Value>().await.unwrap()["secret"]
            .as_str()
            .unwrap()
            .to_string();
        let sdk_call = || {
            api.http
                .get(format!("{}/projects", api.base))
                .bearer_auth(&sdk)
                .send()
        };
        let r = sdk_call().await.unwrap();
        assert_eq!(r.status(), 403, "known, but not an admin key");

        let r = api
            .req(Method::DELETE, "/projects/shop/environments/staging")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 428);
        let r = api
            .req(Method::DELETE, "/projects/shop/environments/staging")
            .header("If-Match", "\"2\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(sdk_call().await.unwrap().status(), 401);
        let r = api
            .req(Method::DELETE, "/projects/shop")
            .header("If-Match", "\"2\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(api.get("/projects/shop").await.status(), 404);
        server.stop().await;
    }
}

#[tokio::test]
async fn flags_are_versioned_and_per_environment_settings_and_the_kill_switch_take_if_match() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let api = Api::new(&server);

        let r = api
            .post("/projects/demo/flags", bool_flag("dark-mode"))
            .await;
        assert_eq!(r.status(), 201, "{backend:?}");
        assert_eq!(
            r.headers()["location"],
            "/api/v1/projects/demo/flags/dark-mode"
        );
        let flag: Value = r.json().await.unwrap();
        assert_eq!(flag["environments"]["production"]["enabled"], true);
        assert_eq!(flag["environments"]["development"]["enabled"], false);
        let r = api
            .post("/projects/demo/flags", bool_flag("dark-mode"))
            .await;
        assert_eq!(r.status(), 409);

        let r = api.get("/projects/demo/flags/dark-mode").await;
        assert_eq!(etag(&r), "\"1\"");

        // The kill switch.
        let path = "/projects/demo/flags/dark-mode/environments/production";
        let r = api
            .send(Method::PATCH, path, None, json!({"enabled": false}))
            .await;
        assert_eq!(r.status(), 428);
        let r = api
            .send(
                Method::PATCH,
                path,
                Some("\"1\""),
                json!({"enabled": false, "rules": []}),
            )
            .await;
        assert_eq!(
            error_of(r, StatusCode::BAD_REQUEST).await["code"],
            "invalid_body"
        );
        let r = api
            .send(
                Method::PATCH,
                path,
                Some("\"1\""),
                json!({"enabled": false}),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(etag(&r), "\"2\"");
        let flag: Value = r.json().await.unwrap();
        assert_eq!(flag["environments"]["production"]["enabled"], false);
        assert_eq!(
            flag["environments"]["production"]["fallthrough"],
            json!({"variation": "on"})
        );

        // Replacing one environment's settings leaves the others alone.
        let settings = json!({"enabled": true, "off_variation": "off",
            "rules": [{"conditions": [{"attribute": "plan", "op": "equals", "value": "pro"}],
                       "serve": {"variation": "on"}}],
            "fallthrough": {"variation": "off"}});
        let dev = "/projects/demo/flags/dark-mode/environments/development";
        let r = api
            .send(Method::PUT, dev, Some("\"1\""), settings.clone())
            .await;
        assert_eq!(r.status(), 412, "a stale version is refused");
        let r = api
            .send(Method::PUT, dev, Some("\"2\""), settings.clone())
            .await;
        assert_eq!(r.status(), 200);
        let flag: Value = r.json().await.unwrap();
        assert_eq!(flag["version"], 3);
        assert_eq!(
            flag["environments"]["development"]["rules"][0]["serve"],
            json!({"variation": "on"})
        );
        assert_eq!(flag["environments"]["production"]["enabled"], false);
        let r = api
            .send(
                Method::PUT,
                "/projects/demo/flags/dark-mode/environments/nope",
                Some("\"3\""),
                settings.clone(),
            )
            .await;
        assert_eq!(r.status(), 404);
        let r = api
            .send(
                Method::PATCH,
                "/projects/demo/flags/ghost/environments/production",
                Some("\"1\""),
                json!({"enabled": true}),
            )
            .await;
        assert_eq!(r.status(), 404);

        // The whole flag.
        let mut renamed = bool_flag("dark-mode");
        renamed["name"] = json!("Dark mode");
        renamed["environments"] = json!({});
        let r = api
            .send(
                Method::PUT,
                "/projects/demo/flags/dark-mode",
                Some("\"3\""),
                renamed.clone(),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(etag(&r), "\"4\"");
        let flag: Value = r.json().await.unwrap();
        assert_eq!(flag["name"], "Dark mode");
        assert_eq!(
            flag["environments"]["development"]["enabled"], true,
            "unnamed environments keep their settings"
        );
        let mut other = renamed.clone();
        other["key"] = json!("light-mode");
        let r = api
            .send(
                Method::PUT,
                "/projects/demo/flags/dark-mode",
                Some("\"4\""),
                other,
            )
            .await;
        assert_eq!(error_of(r, StatusCode::BAD_REQUEST).await["field"], "key");

        // The served snapshot follows.
        let mut seen = false;
        for _ in 0..100 {
            if let Some(s) = server.state.snapshots.get("demo", "development")
                && format!("{s:?}").contains("dark-mode")
            {
                seen = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(seen, "the development snapshot has the new flag");

        let r = api
            .req(Method::DELETE, "/projects/demo/flags/dark-mode")
            .header("If-Match", "\"3\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 412);
        let r = api
            .req(Method::DELETE, "/projects/demo/flags/dark-mode")
            .header("If-Match", "\"4\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(
            api.get("/projects/demo/flags/dark-mode").await.status(),
            404
        );
        assert_eq!(api.get("/projects/nope/flags").await.status(), 404);
        server.stop().await;
    }
}

#[tokio::test]
async fn a_flag_the_evaluator_rejects_is_a_422_with_the_compiler_message_and_writes_nothing() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let api = Api::new(&server);
        let before = api.audit_len().await;
        let mut flag = bool_flag("broken");
        flag["environments"]["production"]["off_variation"] = json!("missing");
        let r = api.post("/projects/demo/flags", flag).await;
        let err = error_of(r, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(err["code"], "invalid_config", "{backend:?}");
        assert!(
            err["message"].as_str().unwrap().contains("missing"),
            "{err}"
        );
        let mut flag = bool_flag("broken");
        flag["variations"][0]["value"] = json!("not a boolean");
        let r = api.post("/projects/demo/flags", flag).await;
        assert_eq!(r.status(), 422);
        assert_eq!(api.get("/projects/demo/flags/broken").await.status(), 404);
        assert_eq!(
            api.audit_len().await,
            before,
            "a refused change is not audited"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn bad_requests_get_a_4xx_naming_the_field_and_change_nothing() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let api = Api::new(&server);
        let before = api.audit_len().await;
        let flags = "/projects/demo/flags";
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                flags,
                json!({"key": "x", "name": "X", "type": "boolean", "variations": [], "colour": 1}),
                "colour",
            ),
            (
                flags,
                json!({"key": 7, "name": "X", "type": "boolean", "variations": []}),
                "key",
            ),
            (
                flags,
                json!({"key": "Bad Key", "name": "X", "type": "boolean",
                "variations": [{"key": "on", "value": true}]}),
                "key",
            ),
            (
                flags,
                json!({"key": "ok", "name": " ", "type": "boolean",
                "variations": [{"key": "on", "value": true}]}),
                "name",
            ),
            (
                flags,
                json!({"key": "ok", "name": "X", "type": "colour",
                "variations": [{"key": "on", "value": true}]}),
                "type",
            ),
            (
                flags,
                json!({"key": "ok", "name": "X", "type": "boolean",
                "variations": [{"key": "on", "value": true}], "metadata": {"team": ["a"]}}),
                "metadata.team",
            ),
            (
                flags,
                json!({"name": "X", "type": "boolean", "variations": [{"key": "on", "value": true}]}),
                "key",
            ),
            (
                "/projects",
                json!({"key": "p", "name": "P", "owner": "me"}),
                "owner",
            ),
            ("/projects", json!({"key": "", "name": "P"}), "key"),
            (
                "/projects/demo/environments",
                json!({"key": "e".repeat(65), "name": "E"}),
                "key",
            ),
            (
                "/projects/demo/environments/production/holdouts",
                json!({"key": "h", "size": 99_999_999_999_u64}),
                "size",
            ),
            (
                "/projects/demo/environments/production/holdouts",
                json!({"key": "h", "size": 10_001}),
                "size",
            ),
            (
                "/projects/demo/environments/production/holdouts",
                json!({"key": "h", "size": -1}),
                "size",
            ),
            (
                "/projects/demo/environments/production/experiments",
                json!({"key": "e", "flag": "new-search",
                "name": "E", "variations": [{"variation": "on", "weight": 5000}], "coverage": 20000}),
                "coverage",
            ),
            (
                "/api-keys",
                json!({"name": "k", "kind": "server", "project": "demo"}),
                "environment",
            ),
            (
                "/api-keys",
                json!({"name": "k", "kind": {"admin": "owner"}}),
                "kind.admin",
            ),
            (
                "/projects/demo/segments",
                json!({"key": "s", "name": "S", "included": "user-1"}),
                "included",
            ),
        ];
        for (path, body, field) in cases {
            let r = api.post(path, body.clone()).await;
            let err = error_of(r, StatusCode::BAD_REQUEST).await;
            assert_eq!(err["field"], field, "{backend:?} POST {path} {body}: {err}");
        }
        // Not JSON, not an object, wrong content type.
        let r = api
            .req(Method::POST, flags)
            .header("content-type", "application/json")
            .body("{\"key\": ")
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_of(r, StatusCode::BAD_REQUEST).await["code"],
            "invalid_json"
        );
        let r = api.post(flags, json!([1, 2])).await;
        assert_eq!(r.status(), 400);
        let r = api
            .req(Method::POST, flags)
            .body("key=x")
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_of(r, StatusCode::BAD_REQUEST).await["code"],
            "unsupported_media_type"
        );
        // Queries.
        for q in [
            "limit=0",
            "limit=-5",
            "limit=99999999999",
            "before_id=abc",
            "resource_kind=cat",
            "colour=red",
        ] {
            let r = api.get(&format!("/audit?{q}")).await;
            assert_eq!(r.status(), 400, "audit?{q}");
        }
        // A method the path does not have.
        let r = api.req(Method::PUT, "/projects").send().await.unwrap();
        assert!(r.headers()["allow"].to_str().unwrap().contains("POST"));
        assert_eq!(
            error_of(r, StatusCode::METHOD_NOT_ALLOWED).await["code"],
            "method_not_allowed"
        );
        // A huge If-Match.
        let r = api
            .send(
                Method::PATCH,
                "/projects/demo",
                Some("\"99999999999999999999999\""),
                json!({"name": "D"}),
            )
            .await;
        assert_eq!(r.status(), 400);
        assert_eq!(api.audit_len().await, before, "nothing was written");
        assert_eq!(api.get("/projects/demo").await.headers()["etag"], "\"1\"");
        server.stop().await;
    }
}

#[tokio::test]
async fn segments_and_holdouts_are_created_replaced_and_deleted_with_versions() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let api = Api::new(&server);
        let seg = json!({"key": "staff", "name": "Staff", "included": ["alice"],
            "rules": [{"conditions": [{"attribute": "email", "op": "ends_with", "value": "@example.com"}]}]});
        let r = api.post("/projects/demo/segments", seg.clone()).await;
        assert_eq!(r.status(), 201, "{backend:?}");
        assert_eq!(
            api.post("/projects/demo/segments", seg.clone())
                .await
                .status(),
            409
        );
        let mut seg2 = seg.clone();
        seg2["included"] = json!(["alice", "bob"]);
        let path = "/projects/demo/segments/staff";
        assert_eq!(
            api.send(Method::PUT, path, None, seg2.clone())
                .await
                .status(),
            428
        );
        let r = api
            .send(Method::PUT, path, Some("\"1\""), seg2.clone())
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(etag(&r), "\"2\"");
        let r = api.get(path).await;
        assert_eq!(
            r.json::<Value>().await.unwrap()["included"],
            json!(["alice", "bob"])
        );
        let bad = json!({"name": "Staff", "rules": [{"conditions": [
            {"attribute": "x", "op": "in_segment", "value": ["staff"]}]}]});
        let r = api.send(Method::PUT, path, Some("\"2\""), bad).await;
        assert_eq!(
            r.status(),
            422,
            "segment rules may not use segment operators"
        );
        let r = api
            .req(Method::DELETE, path)
            .header("If-Match", "\"2\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);

        let holdouts = "/projects/demo/environments/production/holdouts";
        let r = api
            .post(holdouts, json!({"key": "global", "size": 500}))
            .await;
        assert_eq!(r.status(), 201);
        assert_eq!(
            r.headers()["location"],
            "/api/v1/projects/demo/environments/production/holdouts/global"
        );
        let r = api
            .send(
                Method::PUT,
                &format!("{holdouts}/global"),
                Some("\"1\""),
                json!({"size": 1000}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let h: Value = r.json().await.unwrap();
        assert_eq!(
            (h["size"].clone(), h["version"].clone()),
            (json!(1000), json!(2))
        );
        assert_eq!(api.get(&format!("{holdouts}/global")).await.status(), 200);
        let r = api.get(holdouts).await;
        assert_eq!(r.json::<Vec<Value>>().await.unwrap().len(), 1);
        assert_eq!(
            api.get("/projects/demo/environments/nope/holdouts")
                .await
                .status(),
            404
        );
        let r = api
            .req(Method::DELETE, &format!("{holdouts}/global"))
            .header("If-Match", "\"2\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        server.stop().await;
    }
}

#[tokio::test]
async fn an_experiment_goes_from_draft_to_running_to_stopped_and_running_it_takes_only_a_ramp() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let api = Api::new(&server);
        // The experiment names a metric: it must be defined first.
        let metric = json!({"key": "checkout", "kind": "binomial",
            "numerator": {"event": "checkout"}});
        let r = api.post("/projects/demo/metrics", metric).await;
        assert_eq!(r.status(), 201, "{backend:?}");
        let base = "/projects/demo/environments/development/experiments";
        let exp = json!({"key": "search-test", "flag": "new-search", "name": "Search test",
            "variations": [{"variation": "on", "weight": 5000}, {"variation": "off", "weight": 5000}],
            "metrics": ["checkout"]});
        let r = api.post(base, exp.clone()).await;
        assert_eq!(r.status(), 201, "{backend:?}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["status"], "draft");
        let path = format!("{base}/search-test");

        let mut edited = exp.clone();
        edited["coverage"] = json!(5000);
        let r = api
            .send(Method::PUT, &path, Some("\"1\""), edited.clone())
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(etag(&r), "\"2\"");

        let start = format!("{path}/start");
        assert_eq!(
            api.req(Method::POST, &start).send().await.unwrap().status(),
            428
        );
        let r = api
            .req(Method::POST, &start)
            .header("If-Match", "\"1\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 412);
        let r = api
            .req(Method::POST, &start)
            .header("If-Match", "\"2\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let running: Value = r.json().await.unwrap();
        assert_eq!(running["status"], "running");
        let v = running["version"].as_i64().unwrap();
        let tag = format!("\"{v}\"");
        let r = api
            .req(Method::POST, &start)
            .header("If-Match", &tag)
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r, StatusCode::CONFLICT).await["code"], "conflict");
        // A running experiment takes a ramp, not new weights.
        let mut reweighted = edited.clone();
        reweighted["variations"] =
            json!([{"variation": "on", "weight": 3000}, {"variation": "off", "weight": 7000}]);
        let r = api.send(Method::PUT, &path, Some(&tag), reweighted).await;
        let err = error_of(r, StatusCode::CONFLICT).await;
        assert!(
            err["message"].as_str().unwrap().contains("restart"),
            "{err}"
        );
        let mut ramped = edited.clone();
        ramped["coverage"] = json!(8000);
        let r = api.send(Method::PUT, &path, Some(&tag), ramped).await;
        assert_eq!(r.status(), 200, "a running experiment ramps");
        let v = v + 1;
        let tag = format!("\"{v}\"");

        let stop = format!("{path}/stop");
        let r = api
            .send(Method::POST, &stop, Some(&tag), json!({"winner": "blue"}))
            .await;
        assert_eq!(
            error_of(r, StatusCode::UNPROCESSABLE_ENTITY).await["field"],
            "winner"
        );
        let r = api
            .send(Method::POST, &stop, Some(&tag), json!({"winer": "on"}))
            .await;
        assert_eq!(r.status(), 400);
        let r = api
            .send(Method::POST, &stop, Some(&tag), json!({"winner": "on"}))
            .await;
        assert_eq!(r.status(), 200);
        let stopped: Value = r.json().await.unwrap();
        assert_eq!(
            (stopped["status"].clone(), stopped["winner"].clone()),
            (json!("stopped"), json!("on"))
        );

        // A second experiment stopped with no body at all.
        let mut other = exp.clone();
        other["key"] = json!("other");
        assert_eq!(api.post(base, other).await.status(), 201);
        let r = api
            .req(Method::POST, &format!("{base}/other/start"))
            .header("If-Match", "\"1\"")
            .send()
            .await
            .unwrap();
        let v = r.json::<Value>().await.unwrap()["version"]
            .as_i64()
            .unwrap();
        let r = api
            .req(Method::POST, &format!("{base}/other/stop"))
            .header("If-Match", format!("\"{v}\""))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["winner"], Value::Null);

        let r = api.get(base).await;
        let keys: Vec<Value> = r
            .json::<Vec<Value>>()
            .await
            .unwrap()
            .iter()
            .map(|e| e["key"].clone())
            .collect();
        assert_eq!(keys.len(), 3, "the demo's and these two: {keys:?}");
        let r = api
            .post(
                base,
                json!({"key": "x", "flag": "ghost", "name": "X",
            "variations": [{"variation": "on", "weight": 10000}]}),
            )
            .await;
        assert!(
            r.status() == 422 || r.status() == 404,
            "unknown flag: {}",
            r.status()
        );
        let stopped_tag = format!("\"{}\"", stopped["version"]);
        let r = api
            .req(Method::DELETE, &path)
            .header("If-Match", stopped_tag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        server.stop().await;
    }
}

#[tokio::test]
async fn the_audit_log_records_who_changed_what_with_before_and_after() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let api = Api::new(&server);
        let r = api.post("/projects/demo/flags", bool_flag("audited")).await;
        assert_eq!(r.status(), 201);
        let path = "/projects/demo/flags/audited/environments/production";
        let r = api
            .send(
                Method::PATCH,
                path,
                Some("\"1\""),
                json!({"enabled": false}),
            )
            .await;
        assert_eq!(r.status(), 200);

        let r = api
            .get("/audit?project=demo&resource_kind=flag&resource_key=audited")
            .await;
        assert_eq!(r.status(), 200);
        let entries: Vec<Value> = r.json().await.unwrap();
        assert_eq!(entries.len(), 2, "{backend:?}: {entries:?}");
        let (update, create) = (&entries[0], &entries[1]);
        assert_eq!(update["action"], "update");
        assert_eq!(create["action"], "create");
        assert!(
            update["actor"].as_str().unwrap().starts_with("api_key:"),
            "{update}"
        );
        assert_eq!(
            update["before"]["environments"]["production"]["enabled"],
            true
        );
        assert_eq!(
            update["after"]["environments"]["production"]["enabled"],
            false
        );
        assert_eq!(create["before"], Value::Null);
        assert!(update["at"].is_string());

        // Paging.
        let r = api.get("/audit?limit=1").await;
        let first: Vec<Value> = r.json().await.unwrap();
        assert_eq!(first.len(), 1);
        let id = first[0]["id"].as_i64().unwrap();
        let r = api.get(&format!("/audit?limit=1&before_id={id}")).await;
        let next: Vec<Value> = r.json().await.unwrap();
        assert!(next[0]["id"].as_i64().unwrap() < id);
        server.stop().await;
    }
}

#[tokio::test]
async fn api_keys_show_their_secret_once_and_a_revoked_key_stops_working_at_once() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let api = Api::new(&server);
        let r = api
            .post(
                "/api-keys",
                json!({"name": "ci", "kind": {"admin": "editor"}, "project": "demo"}),
            )
            .await;
        assert_eq!(r.status(), 201, "{backend:?}");
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let made: Value = r.json().await.unwrap();
        let secret = made["secret"].as_str().unwrap().to_string();
        let id = made["id"].as_str().unwrap().to_string();
        assert_eq!(location, format!("/api/v1/api-keys/{id}"));
        assert!(secret.starts_with(made["prefix"].as_str().unwrap()));

        let r = api.get(&format!("/api-keys/{id}")).await;
        let shown = r.text().await.unwrap();
        assert!(!shown.contains(&secret), "the secret is shown only once");
        let r = api.get("/api-keys").await;
        let all = r.text().await.unwrap();
        assert!(all.contains(&id) && !all.contains(&secret));
        let audit = api
            .get("/audit?resource_kind=api_key")
            .await
            .text()
            .await
            .unwrap();
        assert!(
            audit.contains(&id) && !audit.contains(&secret),
            "the audit log never holds a secret"
        );

        let ci = Api {
            key: secret.clone(),
            ..Api::new(&server)
        };
        assert_eq!(ci.get("/projects/demo/flags").await.status(), 200);
        let r = api
            .req(Method::DELETE, &format!("/api-keys/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.json::<Value>().await.unwrap()["revoked_at"].is_string());
        assert_eq!(ci.get("/projects/demo/flags").await.status(), 401);
        assert_eq!(api.get("/api-keys/key_nope").await.status(), 404);
        let r = api
            .post(
                "/api-keys",
                json!({"name": "s", "kind": "server", "project": "demo",
            "environment": "nope"}),
            )
            .await;
        assert_eq!(r.status(), 422);
        server.stop().await;
    }
}

/// Flag metadata is stored with the flag, versioned like the rest of it,
/// and returned with every evaluation (OFREP `metadata`).
#[tokio::test]
async fn flag_metadata_is_kept_and_returned_with_evaluations() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let api = Api::new(&server);
        let mut flag = bool_flag("with-meta");
        flag["metadata"] = json!({"owner": "web", "tier": 2, "beta": false});
        let r = api.post("/projects/demo/flags", flag.clone()).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{backend:?}");
        let tag = etag(&r);
        let created: Value = r.json().await.unwrap();
        assert_eq!(created["metadata"], flag["metadata"], "{backend:?}");

        let r = api
            .post(
                "/api-keys",
                json!({"name": "sdk", "kind": "server", "project": "demo", "environment": "production"}),
            )
            .await;
        let sdk = r.json::<Value>().await.unwrap()["secret"]
            .as_str()
            .unwrap()
            .to_string();
        let evaluate = || async {
            for _ in 0..100 {
                let r = reqwest::Client::new()
                    .post(format!("{}/ofrep/v1/evaluate/flags/with-meta", server.url))
                    .bearer_auth(&sdk)
                    .json(&json!({"context": {"targetingKey": "u"}}))
                    .send()
                    .await
                    .unwrap();
                if r.status() == StatusCode::OK {
                    return r.json::<Value>().await.unwrap();
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            panic!("the flag never became evaluable");
        };
        assert_eq!(
            evaluate().await["metadata"],
            flag["metadata"],
            "{backend:?}"
        );

        // A replacement without metadata clears it.
        let r = api
            .send(
                Method::PUT,
                "/projects/demo/flags/with-meta",
                Some(&tag),
                bool_flag("with-meta"),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{backend:?}");
        let mut cleared = json!(null);
        for _ in 0..100 {
            cleared = evaluate().await;
            if cleared["metadata"] == json!({}) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(cleared["metadata"], json!({}), "{backend:?}");
        server.stop().await;
    }
}

#[tokio::test]
async fn metric_definitions_are_versioned_validated_naming_the_field_and_kept_while_named() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let api = Api::new(&server);
        let base = "/projects/demo/metrics";
        let aov = json!({"key": "order-value", "name": "Order value", "kind": "mean",
            "numerator": {"event": "purchase",
                "conditions": [{"attribute": "currency", "op": "in", "value": ["EUR", "USD"]}]},
            "window_hours": 72, "direction": "higher", "cap": {"fixed": 1000}});
        let r = api.post(base, aov.clone()).await;
        assert_eq!(r.status(), 201, "{backend:?}");
        assert_eq!(etag(&r), "\"1\"");
        assert_eq!(
            r.headers()["location"],
            "/api/v1/projects/demo/metrics/order-value"
        );
        let created: Value = r.json().await.unwrap();
        assert_eq!(created["project"], "demo");
        let mut numerator = aov["numerator"].clone();
        numerator["aggregate"] = json!("count");
        assert_eq!(created["numerator"], numerator, "defaults are shown");
        assert_eq!(
            created["cuped"],
            json!({"enabled": true, "lookback_hours": 168})
        );
        let keys: Vec<Value> = api
            .get(base)
            .await
            .json::<Vec<Value>>()
            .await
            .unwrap()
            .into_iter()
            .map(|m| m["key"].clone())
            .collect();
        assert_eq!(
            keys,
            [json!("order-value"), json!("purchase"), json!("revenue")]
        );

        // Invalid definitions: 422 naming the field; bad JSON shapes: 400.
        for (body, field) in [
            (
                json!({"key": "r", "kind": "ratio", "numerator": {"event": "a"}}),
                "denominator",
            ),
            (
                json!({"key": "r", "kind": "sum", "numerator": {"event": "a"}, "cap": {"percentile": 2}}),
                "cap.percentile",
            ),
            (
                json!({"key": "r", "kind": "count", "numerator": {"event": "a",
                    "conditions": [{"attribute": "x", "op": "in_segment", "value": ["s"]}]}}),
                "numerator.conditions[0].op",
            ),
            (
                json!({"key": "r", "name": "A\u{0}B", "kind": "count", "numerator": {"event": "a"}}),
                "name",
            ),
        ] {
            let r = api.post(base, body).await;
            assert_eq!(r.status(), 422, "{field}");
            let e: Value = r.json().await.unwrap();
            assert_eq!(e["error"]["field"], field, "{e}");
            assert_eq!(e["error"]["code"], "invalid_field");
        }
        let r = api
            .post(
                base,
                json!({"key": "r", "kind": "median", "numerator": {"event": "a"}}),
            )
            .await;
        assert_eq!(r.status(), 400);
        let r = api
            .post(base, json!({"kind": "count", "numerator": {"event": "a"}}))
            .await;
        assert_eq!(r.status(), 400);

        // Replace: If-Match required and checked; the key never changes.
        let path = format!("{base}/order-value");
        let mut lower = aov.clone();
        lower["direction"] = json!("lower");
        let r = api.send(Method::PUT, &path, None, lower.clone()).await;
        assert_eq!(r.status(), 428);
        let r = api
            .send(Method::PUT, &path, Some("\"7\""), lower.clone())
            .await;
        assert_eq!(r.status(), 412);
        let mut renamed = lower.clone();
        renamed["key"] = json!("other");
        let r = api.send(Method::PUT, &path, Some("\"1\""), renamed).await;
        assert_eq!(r.status(), 400);
        let r = api.send(Method::PUT, &path, Some("\"1\""), lower).await;
        assert_eq!(r.status(), 200);
        assert_eq!(etag(&r), "\"2\"");
        let r = api.get(&path).await;
        assert_eq!(etag(&r), "\"2\"");
        assert_eq!(r.json::<Value>().await.unwrap()["direction"], "lower");

        // Experiments name defined metrics only, with a role.
        let experiments = "/projects/demo/environments/development/experiments";
        let exp = |metrics: Value| {
            json!({"key": "aov-test", "flag": "new-search", "name": "AOV",
                "variations": [{"variation": "on", "weight": 5000}, {"variation": "off", "weight": 5000}],
                "metrics": metrics})
        };
        let r = api
            .post(experiments, exp(json!(["purchase", "nope"])))
            .await;
        assert_eq!(r.status(), 422);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["field"], "metrics[1]");
        assert!(e["error"]["message"].as_str().unwrap().contains("\"nope\""));
        let r = api
            .post(
                experiments,
                exp(json!([{"metric": "purchase", "role": "boss"}])),
            )
            .await;
        assert_eq!(r.status(), 400);
        let r = api
            .post(
                experiments,
                exp(json!(["purchase", {"metric": "order-value", "role": "guardrail"}])),
            )
            .await;
        assert_eq!(r.status(), 201);
        let e: Value = r.json().await.unwrap();
        assert_eq!(
            e["metrics"],
            json!([{"metric": "purchase", "role": "goal"},
                   {"metric": "order-value", "role": "guardrail"}])
        );

        // Deleting a metric an experiment names: 409 naming it.
        let r = api
            .send(Method::DELETE, &path, Some("\"2\""), json!(null))
            .await;
        assert_eq!(r.status(), 409);
        let e: Value = r.json().await.unwrap();
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains("development/aov-test"), "{message}");
        let r = api
            .send(
                Method::DELETE,
                &format!("{experiments}/aov-test"),
                Some("\"1\""),
                json!(null),
            )
            .await;
        assert_eq!(r.status(), 204);
        let r = api
            .send(Method::DELETE, &path, Some("\"2\""), json!(null))
            .await;
        assert_eq!(r.status(), 204);
        assert_eq!(api.get(&path).await.status(), 404);

        let r = api
            .get("/audit?resource_kind=metric&resource_key=order-value")
            .await;
        let actions: Vec<Value> = r
            .json::<Vec<Value>>()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e["action"].clone())
            .collect();
        assert_eq!(actions, [json!("delete"), json!("update"), json!("create")]);
        server.stop().await;
    }
}
