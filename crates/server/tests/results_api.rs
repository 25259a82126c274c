//! The results API end to end over HTTP: a seeded simulation of units,
//! exposures and conversions with a known true effect (with late,
//! duplicate and out-of-order events, pre-exposure conversions for CUPED,
//! and units exposed to both arms) is sent to `/api/v1/events`; the
//! results must report the effect within their interval, carry sufficient
//! statistics equal to those computed here independently from the same
//! generated data, and statistics equal to `switchyard-stats` on them.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_server::AppState;

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
        cfg.checkpoint_interval = Duration::from_millis(200);
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

impl Server {
    async fn stop(self) {
        self.test.stop().await;
    }

    fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }

    /// Creates and starts an experiment on the demo's `new-search` flag,
    /// measuring the demo's `purchase` metric (binomial, `purchase` events).
    async fn running_experiment(&self, key: &str, weights: [u32; 2]) {
        let http = reqwest::Client::new();
        let base = "/projects/demo/environments/development/experiments";
        let r = http
            .post(self.api(base))
            .bearer_auth(&self.admin)
            .json(&json!({"key": key, "flag": "new-search", "name": key,
                "variations": [{"variation": "off", "weight": weights[0]}, {"variation": "on", "weight": weights[1]}],
                "metrics": ["purchase"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let r = http
            .post(self.api(&format!("{base}/{key}/start")))
            .bearer_auth(&self.admin)
            .header("If-Match", "\"1\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    async fn send(&self, events: &[Value]) {
        let http = reqwest::Client::new();
        for chunk in events.chunks(500) {
            let r = http
                .post(format!("{}/api/v1/events", self.url))
                .bearer_auth(&self.sdk)
                .json(&Value::from(chunk.to_vec()))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let report: Value = r.json().await.unwrap();
            assert_eq!(report["rejected"], json!([]), "{report}");
        }
    }

    async fn results(&self, key: &str, query: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(self.api(&format!(
                "/projects/demo/environments/development/experiments/{key}/results{query}"
            )))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap()
    }

    /// Results once they include every event in the stream.
    async fn settled(&self, key: &str, query: &str) -> Value {
        let end = self.state.events.as_ref().unwrap().stream().bounds().1;
        for _ in 0..500 {
            let r = self.results(key, query).await;
            if r.status() == 200 {
                let v: Value = r.json().await.unwrap();
                if v["freshness"]["offset"].as_u64() >= Some(end) {
                    return v;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the results never caught up with offset {end}");
    }
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn uniform(s: &mut u64) -> f64 {
    (xorshift(s) >> 11) as f64 / (1u64 << 53) as f64
}

fn iso(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// What the simulation generated, per unit: the arms it was exposed to,
/// its first exposure, and its purchase times.
#[derive(Default)]
struct Truth {
    arms: BTreeMap<String, (Vec<usize>, i64, Vec<i64>)>,
}

const P_CONTROL: f64 = 0.10;
const P_TREATMENT: f64 = 0.16;

/// The simulation: `units` units split by `split` (share of treatment),
/// true conversion rates `P_CONTROL`/`P_TREATMENT`, half the units with a
/// pre-exposure purchase history correlated with their outcome.
fn simulate(seed: u64, experiment: &str, units: usize, split: f64, t0: i64) -> (Vec<Value>, Truth) {
    let mut s = seed;
    let mut events = Vec::new();
    let mut truth = Truth::default();
    let mut id = 0u64;
    let mut push = |events: &mut Vec<Value>, mut e: Value| {
        id += 1;
        e["id"] = format!("{experiment}-{id}").into();
        events.push(e);
    };
    for u in 0..units {
        let unit = format!("{experiment}-user-{u}");
        let arm = usize::from(uniform(&mut s) < split);
        let first = t0 + (xorshift(&mut s) % (6 * 3_600_000)) as i64;
        let loyal = uniform(&mut s) < 0.5;
        let mut arms = vec![arm];
        let mut purchases = Vec::new();
        // Exposure records: the first, and sometimes a later repeat.
        push(
            &mut events,
            json!({"type": "exposure", "unit": unit, "experiment": experiment,
            "variation": (["off", "on"][arm]), "time": iso(first)}),
        );
        if uniform(&mut s) < 0.3 {
            let later = first + (xorshift(&mut s) % 3_600_000) as i64;
            push(
                &mut events,
                json!({"type": "exposure", "unit": unit, "flag": "new-search",
                "variation": (["off", "on"][arm]), "time": iso(later)}),
            );
        }
        // A few units are exposed to both arms.
        if u % 150 == 7 {
            arms.push(1 - arm);
            let t = first + 60_000;
            push(
                &mut events,
                json!({"type": "exposure", "unit": unit, "experiment": experiment,
                "variation": (["off", "on"][1 - arm]), "time": iso(t)}),
            );
        }
        // Pre-exposure purchases (CUPED covariate), up to 3 days before.
        if loyal && uniform(&mut s) < 0.6 {
            let t = first - 1 - (xorshift(&mut s) % (3 * 24 * 3_600_000)) as i64;
            purchases.push(t);
            push(
                &mut events,
                json!({"type": "track", "unit": unit, "name": "purchase", "value": 20, "time": iso(t)}),
            );
        }
        let p = [P_CONTROL, P_TREATMENT][arm] * if loyal { 1.5 } else { 0.5 };
        if uniform(&mut s) < p {
            let t = first + 1 + (xorshift(&mut s) % (2 * 3_600_000)) as i64;
            purchases.push(t);
            push(
                &mut events,
                json!({"type": "track", "unit": unit, "name": "purchase", "value": 20, "time": iso(t)}),
            );
        }
        // An unrelated event, which no metric reads.
        push(
            &mut events,
            json!({"type": "track", "unit": unit, "name": "page_view", "time": iso(first + 5)}),
        );
        truth.arms.insert(unit, (arms, first, purchases));
    }
    // Duplicates: some events sent again with the same id.
    let dups: Vec<Value> = events.iter().step_by(17).cloned().collect();
    events.extend(dups);
    // Out of order: the whole stream shuffled, so conversions often arrive
    // before their unit's exposure and late events after later ones.
    for i in (1..events.len()).rev() {
        let j = (xorshift(&mut s) % (i as u64 + 1)) as usize;
        events.swap(i, j);
    }
    (events, truth)
}

/// The regression-adjusted binomial statistic per arm, computed here from
/// the generated truth: units exposed to one arm only; post = purchased at
/// or after the first exposure; pre = purchased in the 7 days before.
fn expected_statistics(truth: &Truth) -> (Vec<Value>, [u64; 2], u64) {
    let mut n = [0u64; 2];
    let mut post = [0u64; 2];
    let mut pre = [0u64; 2];
    let mut both = [0u64; 2];
    let mut excluded = 0;
    for (arms, first, purchases) in truth.arms.values() {
        if arms.len() > 1 {
            excluded += 1;
            continue;
        }
        let a = arms[0];
        n[a] += 1;
        let x = purchases.iter().any(|t| t >= first);
        let y = purchases
            .iter()
            .any(|t| t < first && *t >= first - 7 * 24 * 3_600_000);
        post[a] += u64::from(x);
        pre[a] += u64::from(y);
        both[a] += u64::from(x && y);
    }
    let stats = (0..2)
        .map(|a| {
            json!({"type": "regression_adjusted", "n": n[a],
                "post": {"type": "proportion", "successes": post[a] as f64},
                "pre": {"type": "proportion", "successes": pre[a] as f64},
                "sum_products": both[a] as f64})
        })
        .collect();
    (stats, n, excluded)
}

/// Equal JSON, numbers to 1e-12 relative: serde_json's default float
/// parsing (the client's) may be one unit in the last place off.
fn assert_json_close(a: &Value, b: &Value, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                "{at}: {x} != {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_json_close(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}"
            );
            for (k, v) in x {
                assert_json_close(v, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_over_http_find_the_true_effect_and_equal_an_independent_computation() {
    let server = start().await;
    server
        .running_experiment("search-effect", [5000, 5000])
        .await;
    // Exposures start a minute after the experiment does.
    let t0 = now_ms() + 60_000;
    let (events, truth) = simulate(20261204, "search-effect", 6000, 0.5, t0);
    server.send(&events).await;
    let r = server.settled("search-effect", "").await;
    // docs/results.md shows this response (set the variable to refresh it).
    if let Ok(path) = std::env::var("SWITCHYARD_RESULTS_EXAMPLE") {
        std::fs::write(path, serde_json::to_string_pretty(&r).unwrap()).unwrap();
    }

    let (stats, units, excluded) = expected_statistics(&truth);
    assert_eq!(r["excluded_units"], excluded, "{r}");
    assert_eq!(excluded, 40);
    assert_eq!(r["variations"][0]["units"], units[0]);
    assert_eq!(r["variations"][1]["units"], units[1]);
    let metric = &r["metrics"][0];
    assert_eq!(metric["key"], "purchase");
    assert_eq!(
        metric["statistics"],
        Value::from(stats.clone()),
        "sufficient statistics"
    );

    // The statistics equal crates/stats on those sufficient statistics.
    let request = json!({
        "variations": [
            {"id": "off", "weight": 5000.0, "units": units[0]},
            {"id": "on", "weight": 5000.0, "units": units[1]}],
        "metrics": [{"id": "purchase", "data": stats}]
    });
    let reference = switchyard_stats::analyze_document(&request.to_string()).unwrap();
    assert_json_close(&r["analysis"], &reference, "analysis");

    // The true effect lies in the reported interval (CUPED-adjusted).
    let treatment = &r["analysis"]["metrics"][0]["variations"][1]["comparison"];
    assert!(
        treatment["cuped"]["theta"].as_f64().unwrap() > 0.0,
        "{treatment}"
    );
    let ci = &treatment["absolute"]["ci"];
    let true_effect = P_TREATMENT - P_CONTROL;
    let (lo, hi) = (ci["lower"].as_f64().unwrap(), ci["upper"].as_f64().unwrap());
    assert!(
        lo < true_effect && true_effect < hi,
        "{true_effect} not in [{lo}, {hi}]"
    );
    assert!(lo > 0.0, "the effect is detected: [{lo}, {hi}]");

    // No SRM at 50/50; freshness and the hourly series are there.
    assert_eq!(r["analysis"]["srm"]["mismatch"], false);
    assert!(
        !r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "srm_mismatch")
    );
    assert!(r["freshness"]["max_event_time"].is_string());
    let series = r["series"].as_array().unwrap();
    assert!(series.len() >= 6, "hourly points over 6 hours of exposures");
    assert_eq!(series.last().unwrap()["units"], json!([units[0], units[1]]));
    let times: Vec<&str> = series.iter().map(|p| p["time"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]));

    // Other settings of the engine, chosen in the query.
    let b = server.settled("search-effect", "?engine=bayesian").await;
    let chance =
        &b["analysis"]["metrics"][0]["variations"][1]["comparison"]["absolute"]["chance_to_win"];
    assert!(chance.as_f64().unwrap() > 0.95, "{chance}");
    let s = server
        .settled("search-effect", "?sequential=true&correction=holm")
        .await;
    assert_eq!(s["analysis"]["sequential"], true);
    assert_eq!(s["analysis"]["correction"], "holm");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_ratio_mismatch_is_reported_loudly() {
    let server = start().await;
    server.running_experiment("lopsided", [5000, 5000]).await;
    let (events, _) = simulate(7, "lopsided", 3000, 0.65, now_ms() + 60_000);
    server.send(&events).await;
    let r = server.settled("lopsided", "").await;
    assert_eq!(
        r["analysis"]["srm"]["mismatch"], true,
        "{}",
        r["analysis"]["srm"]
    );
    let w = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == "srm_mismatch")
        .expect("an SRM warning");
    assert!(
        w["message"]
            .as_str()
            .unwrap()
            .starts_with("SAMPLE RATIO MISMATCH")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_results_requests_get_4xx_and_sdk_keys_are_refused() {
    let server = start().await;
    server.running_experiment("checks", [5000, 5000]).await;
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(server.results("checks", "?alpha=2").await), 400);
    let r = server.results("checks", "?alpha=2").await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "alpha", "{body}");
    assert_eq!(status(server.results("checks", "?colour=red").await), 400);
    assert_eq!(status(server.results("checks", "?engine=magic").await), 400);
    assert_eq!(
        status(server.results("checks", "?points=100000").await),
        400
    );
    assert_eq!(
        status(
            server
                .results("checks", "?engine=bayesian&sequential=true")
                .await
        ),
        400
    );
    assert_eq!(status(server.results("nope", "").await), 404);
    let r = reqwest::Client::new()
        .get(server.api("/projects/demo/environments/development/experiments/checks/results"))
        .bearer_auth(&server.sdk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A draft has no results yet.
    let r = reqwest::Client::new()
        .post(server.api("/projects/demo/environments/development/experiments"))
        .bearer_auth(&server.admin)
        .json(&json!({"key": "drafty", "flag": "new-search", "name": "d",
            "variations": [{"variation": "off", "weight": 5000}, {"variation": "on", "weight": 5000}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(status(server.results("drafty", "").await), 409);
    // A started experiment with no events yet answers, with zero units.
    let r = server.settled("checks", "").await;
    assert_eq!(r["variations"][0]["units"], 0);
    server.stop().await;
}

/// The aggregator reads the project's stored metric definitions and the
/// roles the experiment gives them, and re-reads them when one changes; a
/// metric an experiment names cannot be deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_use_the_stored_metric_definitions_with_their_roles_and_follow_a_change() {
    let server = start().await;
    let http = reqwest::Client::new();
    let spend = json!({"key": "spend", "kind": "sum", "numerator": {"event": "purchase"},
        "cuped": {"enabled": false}});
    let r = http
        .post(server.api("/projects/demo/metrics"))
        .bearer_auth(&server.admin)
        .json(&spend)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let base = "/projects/demo/environments/development/experiments";
    let r = http
        .post(server.api(base))
        .bearer_auth(&server.admin)
        .json(&json!({"key": "roles", "flag": "new-search", "name": "Roles",
            "variations": [{"variation": "off", "weight": 5000}, {"variation": "on", "weight": 5000}],
            "metrics": ["purchase", {"metric": "spend", "role": "guardrail"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = http
        .post(server.api(&format!("{base}/roles/start")))
        .bearer_auth(&server.admin)
        .header("If-Match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let t0 = now_ms() + 60_000;
    let exposure = |unit: &str, variation: &str| {
        json!({"id": format!("x-{unit}"), "type": "exposure", "unit": unit,
            "experiment": "roles", "variation": variation, "time": iso(t0)})
    };
    let purchase = |id: &str, unit: &str, value: f64| {
        json!({"id": id, "type": "track", "unit": unit, "name": "purchase",
            "value": value, "time": iso(t0 + 1000)})
    };
    server
        .send(&[
            exposure("a", "off"),
            exposure("b", "off"),
            exposure("c", "on"),
            purchase("p1", "a", 30.0),
            purchase("p2", "a", 12.0),
            purchase("p3", "c", 5.0),
        ])
        .await;
    let r = server.settled("roles", "").await;
    let metrics = r["metrics"].as_array().unwrap();
    let summary: Vec<_> = metrics
        .iter()
        .map(|m| (m["key"].clone(), m["kind"].clone(), m["role"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (json!("purchase"), json!("binomial"), json!("goal")),
            (json!("spend"), json!("sum"), json!("guardrail"))
        ],
        "{r}"
    );
    // Sum of `value` per unit: off has a (42) and b (0), on has c (5).
    let stats = &metrics[1]["statistics"];
    assert_eq!(
        (&stats[0]["n"], &stats[0]["sum"], &stats[0]["sum_squares"]),
        (&json!(2), &json!(42.0), &json!(1764.0)),
        "{stats}"
    );
    assert_eq!((&stats[1]["n"], &stats[1]["sum"]), (&json!(1), &json!(5.0)));

    // A changed definition reaches the aggregator: `spend` now counts.
    let mut count = spend.clone();
    count["kind"] = json!("count");
    let r = http
        .put(server.api("/projects/demo/metrics/spend"))
        .bearer_auth(&server.admin)
        .header("If-Match", "\"1\"")
        .json(&count)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let mut kind = Value::Null;
    for _ in 0..250 {
        let r = server.settled("roles", "").await;
        kind = r["metrics"][1]["kind"].clone();
        if kind == "count" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(kind, "count");

    let r = http
        .delete(server.api("/projects/demo/metrics/spend"))
        .bearer_auth(&server.admin)
        .header("If-Match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("development/roles"), "{message}");
    server.stop().await;
}
