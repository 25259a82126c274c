//! Guardrails end to end, on SQLite and PostgreSQL: an experiment whose
//! treatment harms a guardrail metric gets an alert (in its results and
//! the audit log) from the monitor; one configured to stop itself is
//! stopped and its flag serves the baseline to everyone; one that is not
//! keeps running.

mod common;

use std::time::{Duration, Instant};

use common::{BACKENDS, TestServer};
use serde_json::{Value, json};

const ENV: &str = "/projects/demo/environments/development";

async fn call(s: &TestServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let http = reqwest::Client::new();
    let mut req = http
        .request(method.parse().unwrap(), format!("{}/api/v1{path}", s.url))
        .bearer_auth(&s.admin_key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    // Starting the new experiment and setting the new flag's targeting
    // change version 1 of each.
    if path.ends_with("/start") || method == "PUT" {
        req = req.header("If-Match", "\"1\"");
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn sdk_key(s: &TestServer) -> String {
    let (status, body) = call(
        s,
        "POST",
        "/api-keys",
        Some(json!({"name": "sdk", "kind": "server", "project": "demo", "environment": "development"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["secret"].as_str().unwrap().to_string()
}

/// An experiment on `flag` (a copy of the demo's `new-search`) watching
/// `errors` as a guardrail, started.
async fn guarded(s: &TestServer, key: &str, flag: &str, auto_stop: bool) {
    let (status, body) = call(
        s,
        "POST",
        "/projects/demo/flags",
        Some(json!({"key": flag, "name": flag, "type": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        s,
        "POST",
        &format!("{ENV}/experiments"),
        Some(json!({"key": key, "flag": flag, "name": key,
            "variations": [{"variation": "off", "weight": 5000}, {"variation": "on", "weight": 5000}],
            "metrics": ["purchase", {"metric": "errors", "role": "guardrail"}],
            "guardrails": {"auto_stop": auto_stop}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["guardrails"]["auto_stop"], auto_stop, "{body}");
    let (status, body) = call(s, "POST", &format!("{ENV}/experiments/{key}/start"), None).await;
    assert_eq!(status, 200, "{body}");
    // The flag hands its units to the experiment.
    let (status, body) = call(
        s,
        "PUT",
        &format!("/projects/demo/flags/{flag}/environments/development"),
        Some(json!({"enabled": true, "off_variation": "off", "fallthrough": {"experiment": key}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// 300 units per arm, arriving alternately as real traffic does; the
/// treatment's units track two more errors each.
async fn harm(s: &TestServer, sdk: &str, experiment: &str) {
    let mut events = Vec::new();
    for i in 0..300 {
        for (arm, variation) in ["off", "on"].into_iter().enumerate() {
            let unit = format!("{experiment}-{variation}-{i}");
            events.push(json!({"type": "exposure", "unit": unit, "experiment": experiment, "variation": variation}));
            for _ in 0..(i % 3 + 2 * arm) {
                events.push(json!({"type": "track", "unit": unit, "name": "error"}));
            }
        }
    }
    let http = reqwest::Client::new();
    for chunk in events.chunks(500) {
        let r = http
            .post(format!("{}/api/v1/events", s.url))
            .bearer_auth(sdk)
            .json(&chunk)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
}

async fn alerts_of(s: &TestServer, key: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) =
            call(s, "GET", &format!("{ENV}/experiments/{key}/results"), None).await;
        if status == 200 && body["alerts"].as_array().is_some_and(|a| !a.is_empty()) {
            return body["alerts"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no alert for {key}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_harmed_guardrail_raises_an_alert_and_stops_the_experiment_when_asked() {
    for backend in BACKENDS {
        let s = common::start_aggregating(backend, |c| {
            c.guardrail_interval = Duration::from_millis(100);
        })
        .await;
        let (status, body) = call(
            &s,
            "POST",
            "/projects/demo/metrics",
            Some(json!({"key": "errors", "kind": "count", "numerator": {"event": "error"}, "direction": "lower"})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        guarded(&s, "stops", "flag-stops", true).await;
        guarded(&s, "alerts", "flag-alerts", false).await;
        let sdk = sdk_key(&s).await;
        harm(&s, &sdk, "stops").await;
        harm(&s, &sdk, "alerts").await;

        for (key, action) in [("stops", "stopped"), ("alerts", "recorded")] {
            let alerts = alerts_of(&s, key).await;
            let alerts = alerts.as_array().unwrap();
            assert_eq!(alerts.len(), 1, "{backend:?} {key}: {alerts:?}");
            let a = &alerts[0];
            assert_eq!(a["kind"], "guardrail_harmed", "{a}");
            assert_eq!(a["metric"], "errors", "{a}");
            assert_eq!(a["variation"], "on", "{a}");
            assert_eq!(a["action"], action, "{a}");
        }

        // Stopped, serving the baseline to everyone; the other runs on.
        let (_, stopped) = call(&s, "GET", &format!("{ENV}/experiments/stops"), None).await;
        assert_eq!(stopped["status"], "stopped", "{stopped}");
        assert_eq!(stopped["winner"], "off", "{stopped}");
        let (_, running) = call(&s, "GET", &format!("{ENV}/experiments/alerts"), None).await;
        assert_eq!(running["status"], "running", "{running}");
        // The snapshot may lag the monitor's write by a moment.
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        'units: for i in 0..50 {
            loop {
                let r: Value = http
                    .post(format!("{}/ofrep/v1/evaluate/flags/flag-stops", s.url))
                    .bearer_auth(&sdk)
                    .json(&json!({"context": {"targetingKey": format!("any-{i}")}}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if r["variant"] == "off" {
                    continue 'units;
                }
                assert!(Instant::now() < deadline, "unit any-{i} got {r}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        // Both the alerts and the stop are in the audit log, by the monitor.
        let (_, audit) = call(&s, "GET", "/audit?project=demo&limit=100", None).await;
        let entries = audit["entries"].as_array().or(audit.as_array()).unwrap();
        let by_monitor: Vec<(&str, &str)> = entries
            .iter()
            .filter(|e| e["actor"] == "system:guardrails")
            .map(|e| {
                (
                    e["action"].as_str().unwrap(),
                    e["resource_key"].as_str().unwrap(),
                )
            })
            .collect();
        assert!(
            by_monitor.contains(&("alert", "development/stops")),
            "{by_monitor:?}"
        );
        assert!(
            by_monitor.contains(&("alert", "development/alerts")),
            "{by_monitor:?}"
        );
        assert!(
            by_monitor
                .iter()
                .any(|(a, k)| *a == "ship" && k.ends_with("stops")),
            "{by_monitor:?}"
        );
        s.stop().await;
    }
}
