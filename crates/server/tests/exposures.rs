//! Server-side evaluation of an experiment flag logs an exposure to the
//! event log, once per (unit, experiment, variation) within the window;
//! single-flag evaluations do, bulk pre-fetches do not.

mod common;

use std::time::Duration;

use common::{Backend, start};
use serde_json::{Value, json};
use switchyard_store::{ApiKeyInput, ApiKeyKind};

async fn exposures_in_log(server: &common::TestServer) -> Vec<Value> {
    let events = server.state.events.as_ref().expect("event log");
    let s = events.stream();
    let (mut next, end) = s.bounds();
    let mut out = Vec::new();
    while next < end {
        let b = s.read(next, 1 << 20).await.expect("read");
        next = b.next;
        for r in b.records {
            let e =
                serde_json::to_value(switchyard_events::decode_event(&r.payload).expect("decodes"))
                    .expect("json");
            if e.to_string().contains("checkout-test") {
                out.push(e);
            }
        }
    }
    out
}

#[tokio::test]
async fn ofrep_evaluation_of_an_experiment_flag_logs_one_exposure_per_unit() {
    let server = start(Backend::Sqlite).await;
    let key = server
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
    let client = reqwest::Client::new();
    let mut assigned = Vec::new();
    // The demo's checkout-flow flag hands every non-staff unit to the
    // running checkout-test experiment; evaluate each unit three times.
    for unit in ["u-1", "u-2", "u-3"] {
        for _ in 0..3 {
            let r: Value = client
                .post(format!(
                    "{}/ofrep/v1/evaluate/flags/checkout-flow",
                    server.url
                ))
                .bearer_auth(&key)
                .json(&json!({"context": {"targetingKey": unit}}))
                .send()
                .await
                .expect("request")
                .json()
                .await
                .expect("json");
            assert_eq!(r["reason"], "SPLIT", "{r}");
            assigned.push((unit, r["variant"].as_str().expect("variant").to_string()));
        }
    }
    // A unit outside the experiment (staff rule) logs nothing.
    client
        .post(format!(
            "{}/ofrep/v1/evaluate/flags/checkout-flow",
            server.url
        ))
        .bearer_auth(&key)
        .json(&json!({"context": {"targetingKey": "staff-1", "email": "a@example.com"}}))
        .send()
        .await
        .expect("request");

    // Exposures are appended in the background, in batches.
    for _ in 0..50 {
        if exposures_in_log(&server).await.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give a wrongly repeated exposure time to show up too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logged = exposures_in_log(&server).await;
    assert_eq!(logged.len(), 3, "one exposure per unit: {logged:?}");
    for (unit, variant) in assigned {
        assert!(
            logged
                .iter()
                .any(|e| e.to_string().contains(unit) && e.to_string().contains(&variant)),
            "no exposure for {unit}/{variant} in {logged:?}"
        );
    }
    assert!(!logged.iter().any(|e| e.to_string().contains("staff-1")));
    server.stop().await;
}

#[tokio::test]
async fn a_bulk_evaluation_logs_no_exposure_and_a_single_one_logs_one() {
    let server = start(Backend::Sqlite).await;
    let key = server
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
    let client = reqwest::Client::new();
    // Pre-fetches for three units: every flag, the experiment flag included.
    for unit in ["u-1", "u-2", "u-3"] {
        let r: Value = client
            .post(format!("{}/ofrep/v1/evaluate/flags", server.url))
            .bearer_auth(&key)
            .json(&json!({"context": {"targetingKey": unit}}))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        let item = r["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .find(|f| f["key"] == "checkout-flow")
            .expect("checkout-flow in the bulk answer");
        // The unit is in the experiment: a read would be an exposure.
        assert_eq!(item["reason"], "SPLIT", "{item}");
    }
    // Then one application reads the flag for one unit.
    let r: Value = client
        .post(format!(
            "{}/ofrep/v1/evaluate/flags/checkout-flow",
            server.url
        ))
        .bearer_auth(&key)
        .json(&json!({"context": {"targetingKey": "u-2"}}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(r["reason"], "SPLIT", "{r}");

    // The single evaluation's exposure shows up; anything the bulk ones
    // queued earlier would have been appended before it or with it.
    for _ in 0..50 {
        if !exposures_in_log(&server).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logged = exposures_in_log(&server).await;
    assert_eq!(logged.len(), 1, "only the single read: {logged:?}");
    assert!(logged[0].to_string().contains("u-2"), "{logged:?}");
    server.stop().await;
}
