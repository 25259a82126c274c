//! Replay over HTTP: a metric whose definition changes after its events
//! arrived gets, once the experiment is replayed (while events keep
//! arriving), the numbers an aggregator that had the new definition from
//! the start computes over the same stream.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_aggregate::{Aggregator, AnalysisOptions, Limits};
use switchyard_server::AppState;
use switchyard_server::aggregation::load_specs;

/// The common test server (SQLite, demo project, aggregating) and a server
/// SDK key for the demo's development environment.
struct Server {
    url: String,
    admin: String,
    sdk: String,
    state: AppState,
    test: common::TestServer,
}

async fn start() -> Server {
    let test = common::start_aggregating(common::Backend::Sqlite, |cfg| {
        // Small reads: the replay takes many steps while events arrive.
        cfg.read_bytes = 4 << 10;
    })
    .await;
    let sdk = test
        .store
        .create_api_key(
            "test",
            switchyard_store::ApiKeyInput {
                name: "sdk".into(),
                kind: switchyard_store::ApiKeyKind::Server,
                project: Some("demo".into()),
                environment: Some("development".into()),
            },
        )
        .await
        .unwrap();
    Server {
        url: test.url.clone(),
        admin: test.admin_key.clone(),
        sdk: sdk.secret,
        state: test.state.clone(),
        test,
    }
}

const BASE: &str = "/projects/demo/environments/development/experiments";

impl Server {
    fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = reqwest::Client::new()
            .request(method, self.api(path))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn send(url: &str, sdk: &str, events: &[Value]) {
        let http = reqwest::Client::new();
        for chunk in events.chunks(300) {
            let r = http
                .post(format!("{url}/api/v1/events"))
                .bearer_auth(sdk)
                .json(&Value::from(chunk.to_vec()))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    }

    /// Results once they include every event in the stream.
    async fn settled(&self, key: &str) -> Value {
        let end = self.state.events.as_ref().unwrap().stream().bounds().1;
        for _ in 0..1000 {
            let (status, v) = self
                .call(reqwest::Method::GET, &format!("{BASE}/{key}/results"), None)
                .await;
            if status == 200 && v["freshness"]["offset"].as_u64() >= Some(end) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the results never caught up with offset {end}");
    }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Units `from..to`: an exposure each, a purchase for every third, and a
/// `signup` (value 1 to 5) for every second, before or after the exposure.
fn events(from: usize, to: usize, t0: i64) -> Vec<Value> {
    let mut out = Vec::new();
    for u in from..to {
        let unit = format!("r-{u}");
        let t = t0 + u as i64 * 10;
        let variation = if u % 2 == 0 { "off" } else { "on" };
        if u % 4 == 0 {
            // A signup that arrives before its unit's exposure record.
            out.push(
                json!({"id": format!("s-{u}"), "type": "track", "unit": unit,
                "name": "signup", "value": (u % 5 + 1) as f64, "time": t + 5}),
            );
        }
        out.push(
            json!({"id": format!("x-{u}"), "type": "exposure", "unit": unit,
            "experiment": "rx", "variation": variation, "time": t}),
        );
        if u % 3 == 0 {
            out.push(
                json!({"id": format!("p-{u}"), "type": "track", "unit": unit,
                "name": "purchase", "value": 10.0, "time": t + 3}),
            );
        }
        if u % 4 == 2 {
            out.push(
                json!({"id": format!("s-{u}"), "type": "track", "unit": unit,
                "name": "signup", "value": (u % 5 + 1) as f64, "time": t + 7}),
            );
        }
    }
    out
}

fn close(a: &Value, b: &Value, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                "{at}: {x} != {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                close(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}"
            );
            for (k, v) in x {
                close(v, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_added_after_its_events_gets_after_replay_the_numbers_of_a_fresh_run() {
    use reqwest::Method as M;
    let server = start().await;
    // `signup` first counts an event the application never sends.
    let (status, body) = server
        .call(
            M::POST,
            "/projects/demo/metrics",
            Some(json!({"key": "signup", "kind": "binomial",
                "numerator": {"event": "signup-unused"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = server
        .call(
            M::POST,
            BASE,
            Some(json!({"key": "rx", "flag": "new-search", "name": "Replay",
                "variations": [{"variation": "off", "weight": 5000}, {"variation": "on", "weight": 5000}],
                "metrics": ["purchase", "signup"]})),
        )
        .await;
    assert_eq!(status, 201);
    // A draft has nothing to replay.
    let (status, body) = server
        .call(M::POST, &format!("{BASE}/rx/replay"), None)
        .await;
    assert_eq!(status, 409, "{body}");
    let r = reqwest::Client::new()
        .post(server.api(&format!("{BASE}/rx/start")))
        .bearer_auth(&server.admin)
        .header("If-Match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = server
        .call(M::GET, &format!("{BASE}/rx/replay"), None)
        .await;
    assert_eq!(status, 404, "no replay ran yet");

    let t0 = now_ms() + 1_000;
    Server::send(&server.url, &server.sdk, &events(0, 600, t0)).await;
    server.settled("rx").await;

    // The metric `signup` is changed after its events arrived: it now
    // counts the `signup` events.
    let r = reqwest::Client::new()
        .put(server.api("/projects/demo/metrics/signup"))
        .bearer_auth(&server.admin)
        .header("If-Match", "\"1\"")
        .json(&json!({"kind": "binomial", "numerator": {"event": "signup"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // The aggregator reads the definitions again on the change
    // notification; the replay request does this first too.
    let agg = server.state.aggregation.clone().unwrap();
    agg.refresh(server.state.store.as_ref()).await.unwrap();
    let before = server.settled("rx").await;
    assert_eq!(before["metrics"][1]["key"], "signup");
    let signup = |r: &Value| r["metrics"][1]["statistics"].clone();
    // Changed after the events arrived: nothing counted yet.
    assert_eq!(before["metrics"][1]["statistics"][0]["successes"], 0.0);
    assert!(
        before["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "metric_incomplete"),
        "{before}"
    );

    // Events keep arriving while the replay runs.
    let sending = tokio::spawn({
        let (url, sdk) = (server.url.clone(), server.sdk.clone());
        async move {
            for k in 0..4 {
                let from = 600 + k * 100;
                Server::send(&url, &sdk, &events(from, from + 100, t0)).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let (status, started) = server
        .call(M::POST, &format!("{BASE}/rx/replay"), None)
        .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["experiment"], "rx");
    assert!(started["state"] == "running" || started["state"] == "done");
    let mut last = Value::Null;
    for _ in 0..1500 {
        let (status, p) = server
            .call(M::GET, &format!("{BASE}/rx/replay"), None)
            .await;
        assert_eq!(status, 200);
        let fraction = p["fraction"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&fraction), "{p}");
        last = p;
        if last["state"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(last["state"], "done", "{last}");
    assert!(last["events_read"].as_u64().unwrap() > 600, "{last}");
    sending.await.unwrap();
    let after = server.settled("rx").await;
    assert!(
        !after["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "metric_incomplete"),
        "{after}"
    );

    // A fresh aggregator that had both metrics from the start, over the
    // same stream.
    let stream = server.state.events.as_ref().unwrap().stream().clone();
    let specs: Vec<_> = load_specs(server.state.store.as_ref())
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.key == "rx")
        .collect();
    let mut fresh = Aggregator::new(Limits::default(), (5, 6));
    fresh.configure(specs);
    let end = stream.bounds().1;
    let mut at = 0;
    while at < end {
        let batch = stream.read(at, 1 << 20).await.unwrap();
        for r in &batch.records {
            let ev = switchyard_events::decode_event(&r.payload).unwrap();
            fresh.apply(&switchyard_server::aggregation::as_event(&ev));
        }
        at = batch.next;
        fresh.advance(at);
    }
    let want = fresh
        .results(
            "demo",
            "development",
            "rx",
            &AnalysisOptions {
                weights: vec![5000.0, 5000.0],
                ..AnalysisOptions::default()
            },
        )
        .unwrap()
        .unwrap();
    let want = serde_json::to_value(&want).unwrap();
    close(&after["metrics"], &want["metrics"], "metrics");
    close(&after["variations"], &want["variations"], "variations");
    // The test can tell: the signup metric had missed its early events.
    assert_ne!(signup(&before), signup(&after));
    assert!(
        after["metrics"][1]["statistics"][0]["successes"]
            .as_f64()
            .unwrap()
            > 0.0
            || after["metrics"][1]["statistics"][0]["post"]["successes"]
                .as_f64()
                .unwrap()
                > 0.0,
        "{after}"
    );

    server.test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_break_down_by_the_experiments_exposure_attribute() {
    use reqwest::Method as M;
    let server = start().await;
    let (status, body) = server
        .call(
            M::POST,
            BASE,
            Some(json!({"key": "bd", "flag": "new-search", "name": "Breakdown",
                "variations": [{"variation": "off", "weight": 5000}, {"variation": "on", "weight": 5000}],
                "metrics": ["purchase"], "breakdown_by": "country"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let r = reqwest::Client::new()
        .post(server.api(&format!("{BASE}/bd/start")))
        .bearer_auth(&server.admin)
        .header("If-Match", format!("\"{}\"", body["version"]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let t0 = now_ms() + 1_000;
    let countries = ["DE", "FR", "US"];
    let mut events = Vec::new();
    for u in 0..300usize {
        let unit = format!("b-{u}");
        let mut exposure = json!({"type": "exposure", "unit": unit, "experiment": "bd",
            "variation": if u % 2 == 0 { "off" } else { "on" }, "time": t0 + u as i64});
        if u % 10 != 0 {
            exposure["attributes"] = json!({"country": countries[u % 3]});
        }
        events.push(exposure);
        if u % 3 == 0 {
            events.push(json!({"type": "track", "unit": unit, "name": "purchase",
                "time": t0 + u as i64 + 1}));
        }
    }
    Server::send(&server.url, &server.sdk, &events).await;
    let r = server.settled("bd").await;
    let b = &r["breakdown"];
    assert_eq!(b["attribute"], "country", "{r}");
    let segments = b["segments"].as_array().unwrap();
    let units = |v: &str| -> u64 {
        segments
            .iter()
            .find(|s| s["value"] == v)
            .map(|s| {
                s["units"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap())
                    .sum()
            })
            .unwrap_or(0)
    };
    // u % 10 == 0 has no attribute: 30 units; the rest split by u % 3.
    assert_eq!(units("(none)"), 30);
    assert_eq!(units("DE") + units("FR") + units("US"), 270);
    assert_eq!(
        units("DE"),
        (0..300).filter(|u| u % 10 != 0 && u % 3 == 0).count() as u64
    );
    // DE units (u % 3 == 0) all purchased.
    let de = segments.iter().find(|s| s["value"] == "DE").unwrap();
    let stats = &de["statistics"][0];
    for v in 0..2 {
        assert_eq!(
            stats[v]["successes"].as_f64(),
            stats[v]["n"].as_f64(),
            "{de}"
        );
    }
    // Left out when asked.
    let (_, plain) = server
        .call(M::GET, &format!("{BASE}/bd/results?breakdown=false"), None)
        .await;
    assert!(plain.get("breakdown").is_none() && plain["variations"].is_array());
    server.test.stop().await;
}
