//! A write through the control API is in effect on the same node when its
//! answer arrives: a kill switch flipped and then evaluated at once is
//! seen flipped, every time, on both backends.

mod common;

use common::BACKENDS;
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_store::FlagInput;

#[tokio::test]
async fn a_flag_write_is_seen_by_the_next_evaluation_on_the_same_node() {
    for backend in BACKENDS {
        let server = common::start(backend).await;
        // Enough other flags that rebuilding the environment takes a while.
        for i in 0..40 {
            let input: FlagInput = serde_json::from_value(json!({
                "key": format!("filler-{i}"), "name": "filler", "type": "string",
                "variations": [{"key": "a", "value": "a"}, {"key": "b", "value": "b"}],
                "environments": {"production": {"enabled": true, "off_variation": "a",
                    "rules": [{"id": "r", "conditions": [
                        {"attribute": "email", "op": "matches", "value": "^[a-z]+@example\\.(com|org)$"}],
                        "serve": {"variation": "b"}}],
                    "fallthrough": {"variation": "a"}}}}))
            .expect("flag input");
            server
                .store
                .create_flag("test", "demo", input)
                .await
                .expect("filler flag");
        }
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{}/api/v1/projects/demo/flags", server.url))
            .bearer_auth(&server.admin_key)
            .json(&json!({
                "key": "kill", "name": "kill switch", "type": "boolean",
                "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                "environments": {"production": {"enabled": true, "off_variation": "off",
                                                "fallthrough": {"variation": "on"}}}}))
            .send()
            .await
            .expect("create flag");
        assert_eq!(
            resp.status(),
            StatusCode::CREATED,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        let mut etag = resp.headers()["etag"].to_str().expect("etag").to_string();
        let resp = http
            .post(format!("{}/api/v1/api-keys", server.url))
            .bearer_auth(&server.admin_key)
            .json(&json!({"name": "sdk", "kind": "client", "project": "demo", "environment": "production"}))
            .send()
            .await
            .expect("create key");
        assert_eq!(resp.status(), StatusCode::CREATED);
        let sdk_key = resp.json::<Value>().await.expect("json")["secret"]
            .as_str()
            .expect("secret")
            .to_string();

        let mut stale = Vec::new();
        for round in 0..30 {
            let enabled = round % 2 == 1;
            let resp = http
                .patch(format!(
                    "{}/api/v1/projects/demo/flags/kill/environments/production",
                    server.url
                ))
                .bearer_auth(&server.admin_key)
                .header("if-match", &etag)
                .json(&json!({"enabled": enabled}))
                .send()
                .await
                .expect("patch");
            assert_eq!(
                resp.status(),
                StatusCode::OK,
                "{}",
                resp.text().await.unwrap_or_default()
            );
            etag = resp.headers()["etag"].to_str().expect("etag").to_string();
            let eval: Value = http
                .post(format!("{}/ofrep/v1/evaluate/flags/kill", server.url))
                .bearer_auth(&sdk_key)
                .json(&json!({"context": {"targetingKey": "user-1"}}))
                .send()
                .await
                .expect("evaluate")
                .json()
                .await
                .expect("json");
            // Off serves `false`; on serves the fallthrough, `true`.
            if eval["value"] != json!(enabled) {
                stale.push((round, eval));
            }
        }
        assert!(
            stale.is_empty(),
            "{backend:?}: evaluations right after the write saw the old value: {stale:?}"
        );
        server.stop().await;
    }
}
