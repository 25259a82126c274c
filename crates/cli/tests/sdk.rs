//! The Rust SDK against a real `switchyard serve` process on port 0: a
//! change reaches it within a second (by the stream, and by polling);
//! with the server killed it serves its last configuration, reports
//! itself stale, keeps the events tracked meanwhile and delivers them
//! once, exactly, when the server is back; a revoked key stops it with a
//! clear error; exposures of an experiment flag reach the server's log
//! once per unit.

mod common;

use std::time::Duration;

use common::{start, within};
use serde_json::{Value, json};
use switchyard_sdk::{Client, Context, Error, Status};

const KILL_SWITCH: &str = "payments-kill-switch";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reaches_the_sdk_within_a_second_by_stream_and_by_polling() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "127.0.0.1:0", None);
    let (_, key) = server.sdk_key("production").await;
    let streaming = Client::builder(server.url(), &key).build().unwrap();
    let polling = Client::builder(server.url(), &key)
        .streaming(false)
        .poll_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    streaming
        .wait_until_ready(Duration::from_secs(10))
        .await
        .unwrap();
    polling
        .wait_until_ready(Duration::from_secs(10))
        .await
        .unwrap();
    within(Duration::from_secs(5), "the stream is up", || {
        streaming.status().streaming
    })
    .await;
    let user = Context::with_key("user-1");
    assert!(streaming.bool_value(KILL_SWITCH, &user, false));
    assert!(polling.bool_value(KILL_SWITCH, &user, false));
    let revision = streaming.status().revision;

    server.set_enabled(KILL_SWITCH, "production", false).await;
    let took = within(
        Duration::from_secs(1),
        "the stream brings the change",
        || !streaming.bool_value(KILL_SWITCH, &user, true),
    )
    .await;
    eprintln!("change seen by the streaming client after {took:?}");
    within(Duration::from_secs(1), "polling brings the change", || {
        !polling.bool_value(KILL_SWITCH, &user, true)
    })
    .await;
    let details = streaming.bool_details(KILL_SWITCH, &user, true);
    assert_eq!(details.reason, switchyard_sdk::Reason::Disabled);
    assert_eq!(details.variant.as_deref(), Some("off"));
    assert!(details.revision > revision);
    assert_eq!(streaming.status().status, Status::Ready);
    streaming.close().await;
    polling.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_server_down_the_sdk_serves_its_copy_keeps_events_and_catches_up_after() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("sdk-cache.json");
    let server = start(dir.path(), "127.0.0.1:0", None);
    let (addr, admin) = (server.addr.clone(), server.admin.clone());
    let (_, key) = server.sdk_key("production").await;
    let builder = Client::builder(server.url(), &key)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(300))
        .event_retry_backoff(Duration::from_millis(50), Duration::from_millis(300))
        .event_batching(20, Duration::from_millis(50))
        .cache_file(&cache);
    let client = builder.clone().build().unwrap();
    client
        .wait_until_ready(Duration::from_secs(10))
        .await
        .unwrap();
    let user = Context::with_key("user-1");
    assert!(client.bool_value(KILL_SWITCH, &user, false));
    for i in 0..20 {
        client.track(&format!("before-{i}"), "sdk-before", Some(1.0), None);
    }
    client.flush(Duration::from_secs(10)).await.unwrap();

    drop(server); // SIGKILL
    within(
        Duration::from_secs(5),
        "the client reports itself stale",
        || client.status().status == Status::Stale,
    )
    .await;
    assert!(client.status().error.is_some());
    assert!(
        client.bool_value(KILL_SWITCH, &user, false),
        "the last configuration still serves"
    );
    // Tracked while the server is down: queued, then retried.
    for i in 0..100 {
        let mut attributes = serde_json::Map::new();
        attributes.insert("i".into(), i.into());
        client.track(
            &format!("down-{i}"),
            "sdk-down",
            Some(2.0),
            Some(attributes),
        );
    }
    assert!(matches!(
        client.flush(Duration::from_millis(300)).await,
        Err(Error::FlushTimeout { .. })
    ));
    // A service started while the server is down serves the cached copy.
    let restarted = builder.clone().build().unwrap();
    assert!(restarted.bool_value(KILL_SWITCH, &user, false));
    assert!(restarted.status().revision > 0);
    assert!(
        restarted
            .wait_until_ready(Duration::from_millis(200))
            .await
            .is_err()
    );

    let server = start(dir.path(), &addr, Some(&admin));
    server.set_enabled(KILL_SWITCH, "production", false).await;
    for c in [&client, &restarted] {
        within(Duration::from_secs(10), "the client catches up", || {
            !c.bool_value(KILL_SWITCH, &user, true)
        })
        .await;
        // The status follows the swap of the configuration.
        within(Duration::from_secs(1), "the client is ready again", || {
            c.status().status == Status::Ready
        })
        .await;
    }
    client.flush(Duration::from_secs(10)).await.unwrap();
    let stats = client.event_stats();
    assert_eq!(stats.pending, 0);
    assert_eq!(stats.dropped_overflow, 0);
    assert!(stats.retries > 0, "{stats:?}");

    let events = server.events("production").await;
    for (name, count) in [("sdk-before", 20), ("sdk-down", 100)] {
        let units: Vec<&str> = events
            .iter()
            .filter(|e| e["name"] == name)
            .map(|e| e["unit"].as_str().unwrap())
            .collect();
        let distinct: std::collections::BTreeSet<&str> = units.iter().copied().collect();
        assert_eq!(units.len(), count, "{name}: stored {} times", units.len());
        assert_eq!(distinct.len(), count, "{name}: every unit once");
    }
    client.close().await;
    restarted.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stops_the_sdk_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "127.0.0.1:0", None);
    let (id, key) = server.sdk_key("production").await;
    let client = Client::builder(server.url(), &key)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(300))
        .build()
        .unwrap();
    client
        .wait_until_ready(Duration::from_secs(10))
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .delete(format!("{}/api/v1/api-keys/{id}", server.url()))
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    within(Duration::from_secs(5), "the client fails", || {
        client.status().status == Status::Failed
    })
    .await;
    let error = client.status().error.unwrap();
    assert!(error.contains("401"), "{error}");
    match client.wait_until_ready(Duration::from_secs(1)).await {
        Err(Error::Unauthorized(message)) => assert!(message.contains("401"), "{message}"),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    // No more updates: a change is not seen, the last copy serves.
    server.set_enabled(KILL_SWITCH, "production", false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(client.bool_value(KILL_SWITCH, &Context::with_key("u"), false));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposures_of_an_experiment_flag_reach_the_server_once_per_unit() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "127.0.0.1:0", None);
    let (_, key) = server.sdk_key("development").await;
    // Our units are `unit-*`, `staff-1` and `bulk-1`; the demo's simulated
    // traffic uses `sim-*`.
    let client = Client::builder(server.url(), &key).build().unwrap();
    client
        .wait_until_ready(Duration::from_secs(10))
        .await
        .unwrap();
    let mut served = std::collections::BTreeMap::new();
    for round in 0..3 {
        for i in 0..10 {
            let mut ctx = Context::with_key(format!("unit-{i}"));
            ctx.set("country", "NL");
            let v = client.string_value("checkout-flow", &ctx, "none");
            if round > 0 {
                assert_eq!(served[&i], v, "a unit keeps its arm");
            }
            served.insert(i, v);
        }
    }
    // A staff member matches the rule before the experiment: no exposure.
    let mut staff = Context::with_key("staff-1");
    staff.set("email", "ada@example.com");
    assert_eq!(
        client.string_value("checkout-flow", &staff, "none"),
        "one-page"
    );
    // A pre-fetch of every flag is not a read: no exposure either.
    assert_eq!(client.all_flags(&Context::with_key("bulk-1")).len(), 5);

    client.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(client.event_stats().exposures_deduplicated, 20);
    let exposures: Vec<Value> = server
        .events("development")
        .await
        .into_iter()
        .filter(|e| {
            e["type"] == "exposure" && e["unit"].as_str().is_some_and(|u| !u.starts_with("sim-"))
        })
        .collect();
    assert_eq!(exposures.len(), 10, "{exposures:#?}");
    for e in &exposures {
        let i: usize = e["unit"].as_str().unwrap()["unit-".len()..]
            .parse()
            .unwrap();
        assert_eq!(e["experiment"], "checkout-test");
        assert_eq!(e["variation"].as_str().unwrap(), served[&i]);
        assert_eq!(e["attributes"], json!({"country": "NL"}));
    }
    client.close().await;
}
