//! Untrusted configuration cannot stop evaluation: a write that would make
//! an environment too costly to evaluate is a 422 naming the flag and
//! changes nothing, and what is accepted evaluates promptly, on both
//! store backends.

mod common;

use std::time::Duration;

use common::{BACKENDS, TestServer, start};
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_core::limits::MAX_PREREQUISITE_DEPTH;
use switchyard_store::{ApiKeyInput, ApiKeyKind};

fn flag(key: &str, prerequisites: &[String], rules: Value) -> Value {
    json!({
        "key": key, "name": key, "type": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "environments": {"production": {
            "enabled": true, "off_variation": "off",
            "prerequisites": prerequisites.iter()
                .map(|p| json!({"flag": p, "variations": ["on"]}))
                .collect::<Vec<_>>(),
            "rules": rules,
            "fallthrough": {"variation": "on"}}}
    })
}

fn key(i: usize) -> String {
    format!("lim-{i:03}")
}

struct Client {
    http: reqwest::Client,
    url: String,
    admin: String,
    sdk: String,
}

impl Client {
    async fn new(server: &TestServer) -> Client {
        let sdk = server
            .store
            .create_api_key(
                "test",
                ApiKeyInput {
                    name: "server".into(),
                    kind: ApiKeyKind::Server,
                    project: Some("demo".into()),
                    environment: Some("production".into()),
                },
            )
            .await
            .expect("key")
            .secret;
        Client {
            // Generous, but finite: an evaluation that takes exponential
            // time fails the test instead of hanging it.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            url: server.url.clone(),
            admin: server.admin_key.clone(),
            sdk,
        }
    }

    async fn create(&self, flag: &Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/api/v1/projects/demo/flags", self.url))
            .bearer_auth(&self.admin)
            .json(flag)
            .send()
            .await
            .expect("request");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn status_of_flag(&self, key: &str) -> StatusCode {
        self.http
            .get(format!("{}/api/v1/projects/demo/flags/{key}", self.url))
            .bearer_auth(&self.admin)
            .send()
            .await
            .expect("request")
            .status()
    }

    async fn bulk(&self) -> Value {
        let r = self
            .http
            .post(format!("{}/ofrep/v1/evaluate/flags", self.url))
            .bearer_auth(&self.sdk)
            .json(&json!({"context": {"targetingKey": "user-1"}}))
            .send()
            .await
            .expect("bulk evaluation answers in time");
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.expect("json")
    }

    async fn single(&self, key: &str) -> Value {
        let r = self
            .http
            .post(format!("{}/ofrep/v1/evaluate/flags/{key}", self.url))
            .bearer_auth(&self.sdk)
            .json(&json!({"context": {"targetingKey": "user-1"}}))
            .send()
            .await
            .expect("evaluation answers in time");
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.expect("json")
    }
}

/// The refused write's answer: 422, `invalid_config`, the flag named.
fn assert_refused(status: StatusCode, body: &Value, flag: &str, words: &[&str]) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_config", "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains(&format!("flag {flag:?}")), "{message}");
    for w in words {
        assert!(message.contains(w), "{message} lacks {w}");
    }
}

async fn reload(server: &TestServer) {
    server
        .state
        .snapshots
        .reload_project("demo", None)
        .await
        .expect("reload");
}

#[tokio::test]
async fn a_prerequisite_chain_over_the_depth_limit_is_a_422_naming_the_flag_and_changes_nothing() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let api = Client::new(&server).await;
        for i in 0..=MAX_PREREQUISITE_DEPTH {
            let before: Vec<String> = i.checked_sub(1).map(key).into_iter().collect();
            let (status, body) = api.create(&flag(&key(i), &before, json!([]))).await;
            assert_eq!(
                status,
                StatusCode::CREATED,
                "{backend:?} {}: {body}",
                key(i)
            );
        }
        let over = key(MAX_PREREQUISITE_DEPTH + 1);
        let (status, body) = api
            .create(&flag(&over, &[key(MAX_PREREQUISITE_DEPTH)], json!([])))
            .await;
        assert_refused(status, &body, &over, &["prerequisites", "levels deep"]);
        assert_eq!(api.status_of_flag(&over).await, StatusCode::NOT_FOUND);

        // What was accepted evaluates, along the whole chain.
        reload(&server).await;
        let top = api.single(&key(MAX_PREREQUISITE_DEPTH)).await;
        assert_eq!(
            (&top["value"], &top["reason"]),
            (&json!(true), &json!("DEFAULT")),
            "{top}"
        );
        let bulk = api.bulk().await;
        let flags = bulk["flags"].as_array().expect("flags");
        assert!(flags.iter().all(|f| f["key"] != over.as_str()), "{bulk}");
        server.stop().await;
    }
}

#[tokio::test]
async fn prerequisites_that_fan_in_are_evaluated_promptly_over_http() {
    let server = start(common::Backend::Sqlite).await;
    let api = Client::new(&server).await;
    // Each flag requires the three before it: evaluating the top one used
    // to visit the bottom one tens of millions of times.
    let n: usize = 30;
    for i in 0..n {
        let before: Vec<String> = (i.saturating_sub(3)..i).map(key).collect();
        let (status, body) = api.create(&flag(&key(i), &before, json!([]))).await;
        assert_eq!(status, StatusCode::CREATED, "{}: {body}", key(i));
    }
    reload(&server).await;
    let top = api.single(&key(n - 1)).await;
    assert_eq!(top["value"], true, "{top}");
    let bulk = api.bulk().await;
    let ours: Vec<&Value> = bulk["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .filter(|f| f["key"].as_str().is_some_and(|k| k.starts_with("lim-")))
        .collect();
    assert_eq!(ours.len(), n);
    assert!(ours.iter().all(|f| f["value"] == true), "{ours:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_flag_with_a_thousand_short_regexes_is_a_422_naming_it_and_changes_nothing() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let api = Client::new(&server).await;
        let rules: Vec<Value> = (0..1000)
            .map(|i| {
                json!({"conditions": [{"attribute": "email", "op": "matches",
                                             "value": format!(r"\w{{10}}{i}")}],
                            "serve": {"variation": "on"}})
            })
            .collect();
        let (status, body) = api.create(&flag("regexes", &[], json!(rules))).await;
        assert_refused(
            status,
            &body,
            "regexes",
            &["conditions[0].value", "regexes"],
        );
        assert_eq!(api.status_of_flag("regexes").await, StatusCode::NOT_FOUND);
        // Evaluation goes on as before.
        reload(&server).await;
        assert!(
            api.bulk().await["flags"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
        );
        server.stop().await;
    }
}
