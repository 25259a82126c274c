//! An exposure the server logs from an OFREP evaluation carries the
//! context's scalar attributes (bounded), so results can be broken down by
//! one of them.

mod common;

use std::time::Duration;

use common::{Backend, start};
use serde_json::{Value, json};
use switchyard_store::{ApiKeyInput, ApiKeyKind};

async fn logged_exposures(server: &common::TestServer) -> Vec<Value> {
    let s = server.state.events.as_ref().expect("event log").stream();
    let (mut next, end) = s.bounds();
    let mut out = Vec::new();
    while next < end {
        let b = s.read(next, 1 << 20).await.expect("read");
        next = b.next;
        for r in b.records {
            let e = switchyard_events::decode_event(&r.payload).expect("decodes");
            if e.kind == "exposure" {
                out.push(serde_json::to_value(&e).expect("json"));
            }
        }
    }
    out
}

#[tokio::test]
async fn a_logged_exposure_carries_the_contexts_scalar_attributes() {
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
    for context in [
        json!({"targetingKey": "u-1", "country": "DE", "plan": "pro", "seats": 3,
               "tags": ["a"], "note": "x".repeat(200)}),
        json!({"targetingKey": "u-2"}),
    ] {
        let r = client
            .post(format!(
                "{}/ofrep/v1/evaluate/flags/checkout-flow",
                server.url
            ))
            .bearer_auth(&key)
            .json(&json!({ "context": context }))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
    }
    let mut logged = Vec::new();
    for _ in 0..50 {
        logged = logged_exposures(&server).await;
        if logged.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let of = |unit: &str| {
        logged
            .iter()
            .find(|e| e["unit"] == unit)
            .unwrap_or_else(|| panic!("no exposure of {unit}: {logged:?}"))
            .clone()
    };
    assert_eq!(
        of("u-1")["attributes"],
        json!({"country": "DE", "plan": "pro", "seats": 3}),
        "scalars only, long values left out"
    );
    assert!(of("u-2").get("attributes").is_none());
    server.stop().await;
}
