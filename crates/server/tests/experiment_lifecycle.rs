//! The experiment lifecycle over real HTTP, on SQLite and PostgreSQL: one
//! call creates a running experiment with its flag; coverage ramps while it
//! runs without moving anyone (checked with OFREP evaluations of many
//! units); changes that would move units are refused; pause, resume, ship
//! and restart as a new phase, each versioned, audited, and refused with a
//! clear 409/422 that changes nothing when the transition is wrong.

mod common;

use std::time::Duration;

use common::{BACKENDS, Backend, TestServer, start, start_with_aggregation};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use switchyard_store::{ApiKeyInput, ApiKeyKind};

const BASE: &str = "/projects/demo/environments/production/experiments";

struct Api {
    base: String,
    ofrep: String,
    admin: String,
    client_key: String,
    http: reqwest::Client,
}

impl Api {
    async fn new(server: &TestServer) -> Api {
        let client_key = server
            .store
            .create_api_key(
                "test",
                ApiKeyInput {
                    name: "client".into(),
                    kind: ApiKeyKind::Client,
                    project: Some("demo".into()),
                    environment: Some("production".into()),
                },
            )
            .await
            .expect("key")
            .secret;
        Api {
            base: format!("{}/api/v1", server.url),
            ofrep: format!("{}/ofrep/v1/evaluate/flags", server.url),
            admin: server.admin_key.clone(),
            client_key,
            http: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        if_match: Option<i64>,
        body: Value,
    ) -> Response {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.admin);
        if !body.is_null() {
            r = r.json(&body);
        }
        if let Some(v) = if_match {
            r = r.header("If-Match", format!("\"{v}\""));
        }
        r.send().await.expect("request")
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.send(Method::GET, path, None, Value::Null).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("json")
    }

    /// `POST .../{action}` with If-Match, expecting `status`; the body.
    async fn action(
        &self,
        exp: &str,
        action: &str,
        version: i64,
        body: Value,
        status: u16,
    ) -> Value {
        let r = self
            .send(
                Method::POST,
                &format!("{BASE}/{exp}/{action}"),
                Some(version),
                body,
            )
            .await;
        assert_eq!(r.status().as_u16(), status, "{action} of {exp}");
        r.json().await.unwrap_or(Value::Null)
    }

    /// OFREP single-flag evaluation of `flag` for each unit: (variant, reason).
    async fn evaluate(&self, flag: &str, units: &[String]) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(units.len());
        for u in units {
            let r: Value = self
                .http
                .post(format!("{}/{flag}", self.ofrep))
                .bearer_auth(&self.client_key)
                .json(&json!({"context": {"targetingKey": u}}))
                .send()
                .await
                .expect("ofrep")
                .json()
                .await
                .expect("json");
            out.push((
                r["variant"].as_str().unwrap_or("").to_string(),
                r["reason"].as_str().unwrap_or("").to_string(),
            ));
        }
        out
    }

    async fn audit_actions(&self, key: &str) -> Vec<String> {
        let entries = self.get("/audit?limit=1000").await;
        let mut out: Vec<String> = entries
            .as_array()
            .expect("list")
            .iter()
            .filter(|e| e["resource_key"] == key)
            .map(|e| {
                format!(
                    "{}:{}",
                    e["resource_kind"].as_str().unwrap_or(""),
                    e["action"].as_str().unwrap_or("")
                )
            })
            .collect();
        out.reverse();
        out
    }
}

impl Api {
    /// Polls the results API until `done` holds for its answer (or 20 s).
    async fn results_until(&self, exp: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            let r = self
                .send(
                    Method::GET,
                    &format!("{BASE}/{exp}/results"),
                    None,
                    Value::Null,
                )
                .await;
            if r.status() == 200 {
                last = r.json().await.expect("json");
                if done(&last) {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("results of {exp} never got there: {last}");
    }
}

/// Units over all variations in a results answer.
fn result_units(r: &Value) -> u64 {
    r["variations"]
        .as_array()
        .map_or(0, |vs| vs.iter().filter_map(|v| v["units"].as_u64()).sum())
}

fn units(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("unit-{i}")).collect()
}

/// Every exposure record of `experiment` in the event log.
async fn exposures(server: &TestServer, experiment: &str) -> usize {
    let events = server.state.events.as_ref().expect("event log");
    let s = events.stream();
    let (mut next, end) = s.bounds();
    let mut n = 0;
    let needle = format!("\"{experiment}\"");
    while next < end {
        let b = s.read(next, 1 << 20).await.expect("read");
        next = b.next;
        for r in b.records {
            let e =
                serde_json::to_value(switchyard_events::decode_event(&r.payload).expect("decodes"))
                    .expect("json");
            if e.to_string().contains(&needle) {
                n += 1;
            }
        }
    }
    n
}

/// Waits until the exposure count stops growing (they are appended in the
/// background, in batches) and returns it.
async fn settled_exposures(server: &TestServer, experiment: &str) -> usize {
    let mut last = exposures(server, experiment).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = exposures(server, experiment).await;
        if now == last {
            return now;
        }
        last = now;
    }
}

/// The one-call body: a running experiment on a new string flag (`flag`
/// is an object: create it; a string names an existing flag).
fn one_call(key: &str, flag: &str, coverage: u32) -> Value {
    json!({
        "key": key, "name": "Lifecycle", "start": true,
        "coverage": coverage,
        "variations": [{"variation": "control", "weight": 5000}, {"variation": "b", "weight": 5000}],
        "flag": {
            "key": flag, "name": "Lifecycle flag", "type": "string",
            "variations": [{"key": "control", "value": "control"}, {"key": "b", "value": "B"}]
        }
    })
}

async fn error_of(r: Response, status: StatusCode) -> Value {
    assert_eq!(r.status(), status);
    let body: Value = r.json().await.expect("json");
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"].clone()
}

#[tokio::test]
async fn coverage_ramps_from_10_to_50_percent_without_moving_any_unit_over_ofrep() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let api = Api::new(&server).await;
        let r = api
            .send(
                Method::POST,
                BASE,
                None,
                one_call("ramp", "ramp-flag", 1000),
            )
            .await;
        assert_eq!(
            r.status(),
            201,
            "{backend:?}: {}",
            r.text().await.unwrap_or_default()
        );
        let e: Value = api.get(&format!("{BASE}/ramp")).await;
        assert_eq!(e["status"], "running");
        let v = e["version"].as_i64().expect("version");

        let units = units(800);
        let at10 = api.evaluate("ramp-flag", &units).await;
        let in10 = at10.iter().filter(|(_, r)| r == "SPLIT").count();
        assert!((40..140).contains(&in10), "{in10} of 800 units at 10 %");

        // Ramp to 50 %: only coverage changes.
        let mut body = e.clone();
        for k in [
            "project",
            "environment",
            "status",
            "winner",
            "started_at",
            "stopped_at",
            "version",
            "phase",
            "salt",
        ] {
            body.as_object_mut().expect("object").remove(k);
        }
        body["coverage"] = json!(5000);
        let r = api
            .send(Method::PUT, &format!("{BASE}/ramp"), Some(v), body.clone())
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        let ramped: Value = api.get(&format!("{BASE}/ramp")).await;
        assert_eq!(
            (ramped["coverage"].clone(), ramped["status"].clone()),
            (json!(5000), json!("running"))
        );
        let v = ramped["version"].as_i64().expect("version");

        let at50 = api.evaluate("ramp-flag", &units).await;
        for (i, ((v10, r10), (v50, r50))) in at10.iter().zip(&at50).enumerate() {
            if r10 == "SPLIT" {
                assert_eq!(
                    (v50, r50.as_str()),
                    (v10, "SPLIT"),
                    "unit-{i} moved at 10 % -> 50 %"
                );
            }
        }
        let in50 = at50.iter().filter(|(_, r)| r == "SPLIT").count();
        assert!((340..460).contains(&in50), "{in50} of 800 units at 50 %");

        // Changes that would move units are refused, naming the way out.
        let mut weights = body.clone();
        weights["variations"] =
            json!([{"variation": "control", "weight": 4000}, {"variation": "b", "weight": 6000}]);
        let mut bucket_by = body.clone();
        bucket_by["bucket_by"] = json!("deviceId");
        let mut layer = body.clone();
        layer["layer"] = json!({"key": "l", "start": 0, "end": 5000});
        for (what, changed) in [
            ("variations", weights),
            ("bucket_by", bucket_by),
            ("layer", layer),
        ] {
            let r = api
                .send(Method::PUT, &format!("{BASE}/ramp"), Some(v), changed)
                .await;
            let err = error_of(r, StatusCode::CONFLICT).await;
            let msg = err["message"].as_str().unwrap_or("");
            assert!(
                msg.contains(what) && msg.contains("restart"),
                "{what}: {msg}"
            );
        }
        let after: Value = api.get(&format!("{BASE}/ramp")).await;
        assert_eq!(after, ramped, "a refused change changes nothing");
        assert_eq!(api.evaluate("ramp-flag", &units).await, at50);
        server.stop().await;
    }
}

#[tokio::test]
async fn pause_resume_ship_and_restart_keep_or_reset_assignments_as_documented() {
    for backend in BACKENDS {
        let server = start_with_aggregation(backend).await;
        let api = Api::new(&server).await;
        let r = api
            .send(
                Method::POST,
                BASE,
                None,
                one_call("life", "life-flag", 10_000),
            )
            .await;
        assert_eq!(r.status(), 201, "{backend:?}");
        let e: Value = r.json().await.expect("json");
        let mut v = e["version"].as_i64().expect("version");
        let units = units(300);
        let running = api.evaluate("life-flag", &units).await;
        assert!(running.iter().all(|(_, r)| r == "SPLIT"));
        let exposed = settled_exposures(&server, "life").await;
        assert_eq!(exposed, 300, "{backend:?}");

        // Resuming a running experiment is a 409 that changes nothing.
        api.action("life", "resume", v, Value::Null, 409).await;
        assert_eq!(api.get(&format!("{BASE}/life")).await["version"], json!(v));
        // A stale version is a 412.
        api.action("life", "pause", v + 1, Value::Null, 412).await;

        let paused = api.action("life", "pause", v, Value::Null, 200).await;
        assert_eq!(paused["status"], "paused");
        v = paused["version"].as_i64().expect("version");
        let served = api.evaluate("life-flag", &units).await;
        // Nobody is assigned: the flag serves what it serves without the
        // experiment (the fallthrough's unassigned default, control).
        assert!(
            served.iter().all(|(v, r)| v == "control" && r == "DEFAULT"),
            "{served:?}"
        );
        assert_eq!(
            settled_exposures(&server, "life").await,
            exposed,
            "no exposure while paused"
        );
        api.action("life", "pause", v, Value::Null, 409).await;

        let resumed = api.action("life", "resume", v, Value::Null, 200).await;
        assert_eq!(resumed["status"], "running");
        v = resumed["version"].as_i64().expect("version");
        assert_eq!(
            api.evaluate("life-flag", &units).await,
            running,
            "resume keeps every arm"
        );

        // Ship: an unknown variation is a 422 naming the field.
        let r = api
            .send(
                Method::POST,
                &format!("{BASE}/life/ship"),
                Some(v),
                json!({"variation": "purple"}),
            )
            .await;
        assert_eq!(
            error_of(r, StatusCode::UNPROCESSABLE_ENTITY).await["field"],
            "variation"
        );
        let r = api
            .send(
                Method::POST,
                &format!("{BASE}/life/ship"),
                Some(v),
                json!({}),
            )
            .await;
        assert_eq!(r.status(), 400);
        let before_ship = settled_exposures(&server, "life").await;
        let shipped = api
            .action("life", "ship", v, json!({"variation": "b"}), 200)
            .await;
        assert_eq!(
            (shipped["status"].clone(), shipped["winner"].clone()),
            (json!("stopped"), json!("b"))
        );
        assert!(shipped["stopped_at"].is_string());
        v = shipped["version"].as_i64().expect("version");
        let served = api.evaluate("life-flag", &units).await;
        assert!(
            served
                .iter()
                .all(|(v, r)| v == "b" && r == "TARGETING_MATCH"),
            "{served:?}"
        );
        assert_eq!(
            settled_exposures(&server, "life").await,
            before_ship,
            "a shipped flag logs no exposure"
        );
        // Its final results stay readable: phase 0, every unit once.
        let final_results = api.results_until("life", |r| result_units(r) == 300).await;
        assert_eq!(
            (
                final_results["phase"].clone(),
                final_results["status"].clone()
            ),
            (json!(0), json!("stopped"))
        );
        api.action("life", "pause", v, Value::Null, 409).await;
        api.action("life", "resume", v, Value::Null, 409).await;

        // Restart as a new phase with a fresh randomisation.
        let r = api
            .send(
                Method::POST,
                &format!("{BASE}/life/restart"),
                Some(v),
                json!({"reshufle": true}),
            )
            .await;
        assert_eq!(r.status(), 400, "unknown fields are refused");
        let restarted = api
            .action("life", "restart", v, json!({"reshuffle": true}), 200)
            .await;
        assert_eq!(restarted["status"], "running");
        assert_eq!(restarted["phase"], 1);
        assert_eq!(restarted["salt"], "life#1");
        assert_eq!(restarted["winner"], Value::Null);
        assert_eq!(restarted["stopped_at"], Value::Null);
        assert!(restarted["started_at"].as_str() > shipped["started_at"].as_str());
        let phase1 = api.evaluate("life-flag", &units).await;
        assert!(phase1.iter().all(|(_, r)| r == "SPLIT"));
        // The new phase's results start from nothing and count every unit
        // exposed since, those served the same variation as before too.
        let r = api
            .results_until("life", |r| r["phase"] == 1 && result_units(r) == 300)
            .await;
        assert_eq!(r["status"], "running");
        let same = phase1.iter().zip(&running).filter(|(a, b)| a == b).count();
        assert!(
            (100..200).contains(&same),
            "{same} of 300 kept their arm after a reshuffle"
        );

        // A restart without reshuffle keeps the salt and the arms.
        v = restarted["version"].as_i64().expect("version");
        let again = api.action("life", "restart", v, Value::Null, 200).await;
        assert_eq!(
            (again["phase"].clone(), again["salt"].clone()),
            (json!(2), json!("life#1"))
        );
        assert_eq!(api.evaluate("life-flag", &units).await, phase1);

        let actions = api.audit_actions("life").await;
        for a in [
            "experiment:create",
            "experiment:pause",
            "experiment:resume",
            "experiment:ship",
            "experiment:restart",
        ] {
            assert!(
                actions.iter().any(|x| x == a),
                "{a} not audited: {actions:?}"
            );
        }
        assert!(
            api.audit_actions("life-flag")
                .await
                .iter()
                .any(|x| x == "flag:create")
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn one_call_creates_flag_and_running_experiment_all_or_nothing() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let api = Api::new(&server).await;
        let flag_of = |key: &str| format!("/projects/demo/flags/{key}");

        // The flag's variations must cover the experiment's: a 422, and
        // neither the flag nor the experiment exists afterwards.
        let mut bad = one_call("bad", "bad-flag", 10_000);
        bad["variations"] =
            json!([{"variation": "control", "weight": 5000}, {"variation": "c", "weight": 5000}]);
        let r = api.send(Method::POST, BASE, None, bad).await;
        assert_eq!(r.status(), 422, "{backend:?}");
        let r = api
            .send(Method::GET, &flag_of("bad-flag"), None, Value::Null)
            .await;
        assert_eq!(r.status(), 404);
        let r = api
            .send(Method::GET, &format!("{BASE}/bad"), None, Value::Null)
            .await;
        assert_eq!(r.status(), 404);

        // A flag key that exists already: 409, no experiment.
        let r = api
            .send(
                Method::POST,
                BASE,
                None,
                one_call("dup", "checkout-flow", 10_000),
            )
            .await;
        assert_eq!(r.status(), 409);
        let r = api
            .send(Method::GET, &format!("{BASE}/dup"), None, Value::Null)
            .await;
        assert_eq!(r.status(), 404);

        // The good call: flag on in this environment, fallthrough serving
        // the experiment, off elsewhere; the experiment running.
        let r = api
            .send(
                Method::POST,
                BASE,
                None,
                one_call("good", "good-flag", 10_000),
            )
            .await;
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["location"], format!("/api/v1{BASE}/good"));
        let e: Value = r.json().await.expect("json");
        assert_eq!(e["status"], "running");
        assert_eq!(e["phase"], 0);
        assert!(e["started_at"].is_string());
        let f = api.get(&flag_of("good-flag")).await;
        let prod = &f["environments"]["production"];
        assert_eq!(prod["enabled"], true);
        assert_eq!(prod["fallthrough"], json!({"experiment": "good"}));
        assert_eq!(prod["off_variation"], "control");
        assert_ne!(f["environments"]["development"]["enabled"], true);
        let served = api.evaluate("good-flag", &units(50)).await;
        assert!(served.iter().all(|(_, r)| r == "SPLIT"));

        // Without `start` it is a draft, and `flag` may name an existing flag.
        let r = api
            .send(Method::POST, BASE, None, json!({
                "key": "plain", "flag": "good-flag", "name": "Plain", "breakdown_by": "country",
                "variations": [{"variation": "control", "weight": 5000}, {"variation": "b", "weight": 5000}]
            }))
            .await;
        assert_eq!(r.status(), 201);
        let plain: Value = r.json().await.expect("json");
        assert_eq!(
            (plain["status"].clone(), plain["breakdown_by"].clone()),
            (json!("draft"), json!("country"))
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn a_paused_experiment_can_be_stopped_and_a_draft_cannot_be_shipped_or_restarted() {
    let server = start(Backend::Sqlite).await;
    let api = Api::new(&server).await;
    let mut draft = one_call("d", "d-flag", 10_000);
    draft["start"] = json!(false);
    let r = api.send(Method::POST, BASE, None, draft).await;
    assert_eq!(r.status(), 201);
    for action in ["pause", "resume", "restart"] {
        api.action("d", action, 1, Value::Null, 409).await;
    }
    api.action("d", "ship", 1, json!({"variation": "b"}), 409)
        .await;
    let started = api.action("d", "start", 1, Value::Null, 200).await;
    let paused = api
        .action(
            "d",
            "pause",
            started["version"].as_i64().unwrap(),
            Value::Null,
            200,
        )
        .await;
    let stopped = api
        .action(
            "d",
            "stop",
            paused["version"].as_i64().unwrap(),
            Value::Null,
            200,
        )
        .await;
    assert_eq!(
        (stopped["status"].clone(), stopped["winner"].clone()),
        (json!("stopped"), Value::Null)
    );
    // A stopped experiment may still be shipped once the results are in.
    let shipped = api
        .action(
            "d",
            "ship",
            stopped["version"].as_i64().unwrap(),
            json!({"variation": "control"}),
            200,
        )
        .await;
    assert_eq!(shipped["winner"], "control");
    assert_eq!(shipped["stopped_at"], stopped["stopped_at"]);
    server.stop().await;
}
