//! The experiment, results and metric pages in a real headless Chromium:
//! an editor creates and starts an experiment in the UI, simulated
//! exposures and conversions arrive through the events API, the results
//! page shows the effect and updates by itself, and the editor ships the
//! winner; a viewer sees the results and no control; metric definitions
//! are created and edited with the API's errors shown beside the field.

mod common;

use std::time::Duration;

use common::browser::{Browser, PASSWORD, add_user};
use common::{Backend, TestServer, start_aggregating};
use serde_json::{Value, json};
use switchyard_core::model::{ExperimentStatus, Serve};
use switchyard_store::Role;

async fn server() -> TestServer {
    start_aggregating(Backend::Sqlite, |_| {}).await
}

async fn sdk_key(server: &TestServer, environment: &str) -> String {
    server
        .store
        .create_api_key(
            "test",
            switchyard_store::ApiKeyInput {
                name: "sdk".into(),
                kind: switchyard_store::ApiKeyKind::Server,
                project: Some("demo".into()),
                environment: Some(environment.into()),
            },
        )
        .await
        .unwrap()
        .secret
}

async fn send(server: &TestServer, key: &str, events: &[Value]) {
    let http = reqwest::Client::new();
    for chunk in events.chunks(500) {
        let r = http
            .post(format!("{}/api/v1/events", server.url))
            .bearer_auth(key)
            .json(&Value::from(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let report: Value = r.json().await.unwrap();
        assert_eq!(report["rejected"], json!([]), "{report}");
    }
}

/// Makes `flag`'s fallthrough in `env` serve `experiment` (as the flag
/// editor would).
async fn route_flag_to(server: &TestServer, flag: &str, env: &str, experiment: &str) {
    let f = server.store.get_flag("demo", flag).await.unwrap();
    let mut environments = f.environments.clone();
    let settings = environments
        .entry(env.to_string())
        .or_insert_with(|| f.settings_for(env));
    settings.enabled = true;
    settings.fallthrough = Serve::Experiment(experiment.into());
    let input = switchyard_store::FlagInput {
        key: f.key.clone(),
        name: f.name,
        description: f.description,
        flag_type: f.flag_type,
        variations: f.variations,
        tags: f.tags,
        metadata: f.metadata,
        archived: f.archived,
        environments,
    };
    server
        .store
        .update_flag("user:test", "demo", flag, f.version, input)
        .await
        .unwrap();
}

/// Says yes to the page's confirmation questions (until it reloads).
async fn accept_confirms(b: &Browser) {
    b.eval("window.confirm = () => true; return true").await;
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn xorshift(s: &mut u64) -> f64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    (*s >> 11) as f64 / (1u64 << 53) as f64
}

/// A conversion rate as the results table shows it.
fn shown(rate: f64) -> String {
    let v = rate * 100.0;
    if v >= 10.0 {
        format!("{v:.1}%")
    } else {
        format!("{v:.2}%")
    }
}

/// `n` units per arm exposed over six hours from now, with purchases at
/// `rates` (control, treatment), from three countries. Returns the events
/// and the conversion rate each arm really got.
fn traffic(experiment: &str, n: usize, rates: [f64; 2]) -> (Vec<Value>, [f64; 2]) {
    let t0 = now_ms() + 1_000;
    let mut seed = 0x5eed_u64;
    let mut events = Vec::new();
    let mut converted = [0usize; 2];
    let countries = ["DE", "FR", "US"];
    for u in 0..2 * n {
        let arm = u % 2;
        let unit = format!("unit-{u}");
        let t = t0 + ((u / 2) % 6) as i64 * 3_600_000 + u as i64;
        let variation = ["off", "on"][arm];
        events.push(
            json!({"type": "exposure", "unit": unit, "experiment": experiment,
            "variation": variation, "time": t,
            "attributes": {"country": countries[u % 3]}}),
        );
        if xorshift(&mut seed) < rates[arm] {
            converted[arm] += 1;
            events.push(json!({"type": "track", "unit": unit, "name": "purchase",
                "value": 20, "time": t + 1_000}));
        }
    }
    let rate = |a: usize| converted[a] as f64 / n as f64;
    (events, [rate(0), rate(1)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_creates_and_starts_an_experiment_watches_its_results_update_and_ships_the_winner()
 {
    let server = server().await;
    let sdk = sdk_key(&server, "development").await;
    add_user(&server, "ann@example.com", Role::Editor).await;
    let b = Browser::open(&server).await;
    b.sign_in("ann@example.com", PASSWORD).await;

    // The list, per environment: the demo's experiment runs in both.
    b.goto("/ui/p/demo/experiments?env=development").await;
    let text = b.wait_for_text("main", "One-page checkout").await;
    assert!(text.contains("Running"), "{text}");
    assert!(text.contains("New experiment"), "{text}");
    let problems = b.accessibility_problems().await;
    assert!(problems.is_empty(), "{problems:#?}");
    b.screenshot("experiments", true).await;

    // Create it on the demo's `new-search` flag (variations off and on).
    b.goto("/ui/p/demo/experiments/new?env=development&flag=new-search")
        .await;
    b.wait_for_text("main", "Variations and weights").await;
    let prefilled = b
        .eval(
            "return [...document.querySelectorAll('[data-list=variations] [data-item]')]\
             .map(i => i.querySelector('select').value + ':' + i.querySelector('input').value)",
        )
        .await;
    assert_eq!(prefilled, json!(["off:50", "on:50"]), "equal weights");
    b.fill("#key", "search-test").await;
    b.fill("#name", "Search ranking").await;
    b.fill("#hypothesis", "The new ranking makes more people buy")
        .await;
    // A guardrail beside the goal.
    b.click("[data-repeat]:has([data-list=metrics]) > button[data-add]")
        .await;
    b.select(
        "[data-list=metrics] [data-item]:nth-of-type(2) select[data-key=metric]",
        "revenue",
    )
    .await;
    b.select(
        "[data-list=metrics] [data-item]:nth-of-type(2) select[data-key=role]",
        "guardrail",
    )
    .await;
    b.click("form[data-api] details summary").await;
    b.fill("#breakdown_by", "country").await;
    b.click("#start").await;
    // A bad weight is refused beside the variations, nothing is written.
    b.fill(
        "[data-list=variations] [data-item]:nth-of-type(2) input",
        "70",
    )
    .await;
    let problems = b.accessibility_problems().await;
    assert!(problems.is_empty(), "{problems:#?}");
    b.screenshot("experiment-create", true).await;
    b.click("form[data-api] button[type=submit]").await;
    b.wait_for_text(".form-alert", "Not saved").await;
    assert!(
        server
            .store
            .get_experiment("demo", "development", "search-test")
            .await
            .is_err(),
        "a refused create writes nothing"
    );
    b.fill(
        "[data-list=variations] [data-item]:nth-of-type(2) input",
        "50",
    )
    .await;
    b.click("form[data-api] button[type=submit]").await;
    b.wait_for_path("/ui/p/demo/experiments/development/search-test")
        .await;
    let text = b.wait_for_text("main", "Search ranking").await;
    assert!(text.contains("Running"), "created running: {text}");
    let stored = server
        .store
        .get_experiment("demo", "development", "search-test")
        .await
        .unwrap();
    assert_eq!(stored.status, ExperimentStatus::Running);
    assert_eq!(stored.breakdown_by.as_deref(), Some("country"));
    assert_eq!(
        serde_json::to_value(&stored.metrics).unwrap(),
        json!([{"metric": "purchase", "role": "goal"}, {"metric": "revenue", "role": "guardrail"}])
    );

    // The flag does not send units to it yet: the page says so. Once the
    // flag's fallthrough in development serves the experiment, it does not.
    b.wait_for_text("main", "No traffic reaches this experiment")
        .await;
    route_flag_to(&server, "new-search", "development", "search-test").await;
    b.goto("/ui/p/demo/experiments/development/search-test")
        .await;
    let text = b.wait_for_text("main", "Search ranking").await;
    assert!(!text.contains("No traffic reaches"), "{text}");
    let problems = b.accessibility_problems().await;
    assert!(problems.is_empty(), "{problems:#?}");

    // No data yet: said so, not a meaningless number.
    b.wait_for_text("#results", "Not enough data yet").await;
    assert!(!b.exists("#results svg.intervals").await);

    // Traffic arrives while the page is open; the page is not reloaded.
    b.eval("window.__same_page = true; return true").await;
    let (mut events, rates) = traffic("search-test", 1000, [0.10, 0.16]);
    // Two units are exposed to both arms: left out, and said so loudly.
    for unit in ["both-1", "both-2"] {
        for variation in ["off", "on"] {
            events.push(
                json!({"type": "exposure", "unit": unit, "experiment": "search-test",
                "variation": variation, "time": now_ms() + 2_000}),
            );
        }
    }
    send(&server, &sdk, &events).await;
    let text = b
        .wait_for_text_for("#results", "Better", Duration::from_secs(40))
        .await;
    assert_eq!(
        b.eval("return window.__same_page === true").await,
        json!(true),
        "the results refreshed in place"
    );
    for rate in rates {
        assert!(
            text.contains(&shown(rate)),
            "both arms' conversion {} shown: {text}",
            shown(rate)
        );
    }
    assert!(text.contains("1000"), "units per arm: {text}");
    assert!(text.to_lowercase().contains("p-value"), "{text}");
    assert!(text.contains("By country"), "the breakdown: {text}");
    assert!(text.contains("95% interval"), "{text}");
    assert!(
        b.exists("#results svg.intervals").await,
        "an interval chart"
    );
    assert!(
        b.exists("#results svg.series").await,
        "six hours of exposures draw the effect over time"
    );
    assert!(!text.contains("Sample ratio mismatch"), "{text}");
    assert!(
        text.contains("2 units saw more than one variation"),
        "{text}"
    );
    b.eval("document.getElementById('results').scrollIntoView(); return true")
        .await;
    b.screenshot("experiment-results", true).await;
    b.eval("document.querySelector('#results .metric').scrollIntoView(); return true")
        .await;
    b.screenshot("experiment-results-metric", true).await;
    b.eval("document.querySelector('#results .breakdown').scrollIntoView(); return true")
        .await;
    b.screenshot("experiment-results-breakdown", false).await;
    let problems = b.accessibility_problems().await;
    assert!(problems.is_empty(), "{problems:#?}");

    // Another analysis: Bayesian at 99 %, kept by the refreshing section.
    b.select("#engine", "bayesian").await;
    b.select("#confidence", "99").await;
    b.click("form.analysis button[type=submit]").await;
    b.wait_for_path("/ui/p/demo/experiments/development/search-test?engine=bayesian")
        .await;
    let text = b.wait_for_text("#results", "Bayesian, 99% intervals").await;
    assert!(text.to_lowercase().contains("chance to win"), "{text}");
    let refresh = b
        .eval("return document.getElementById('results').dataset.refresh")
        .await;
    assert!(
        refresh
            .as_str()
            .unwrap_or_default()
            .contains("engine=bayesian&correction=none&confidence=99"),
        "{refresh}"
    );
    b.screenshot("experiment-results-bayesian", false).await;
    b.goto("/ui/p/demo/experiments/development/search-test")
        .await;
    b.wait_for_text("#results", "frequentist, 95% intervals")
        .await;
    accept_confirms(&b).await;
    b.select("#ship-variation", "on").await;
    b.click("form[data-api$='/ship'] button[type=submit]").await;
    b.wait_for_text("main", "Shipped: on").await;
    let stored = server
        .store
        .get_experiment("demo", "development", "search-test")
        .await
        .unwrap();
    assert_eq!(
        (stored.status, stored.winner.as_deref()),
        (ExperimentStatus::Stopped, Some("on"))
    );
    // A stopped experiment's results stay, and stop refreshing.
    let text = b.wait_for_text("#results", "Better").await;
    assert!(!text.contains("refreshes every"), "{text}");
    assert!(!b.exists("#results[data-refresh]").await);
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_buttons_pause_resume_and_stop_with_if_match_and_a_stale_page_is_told() {
    let server = server().await;
    add_user(&server, "ann@example.com", Role::Editor).await;
    let b = Browser::open(&server).await;
    b.sign_in("ann@example.com", PASSWORD).await;
    let page = "/ui/p/demo/experiments/development/checkout-test";
    b.goto(page).await;
    b.wait_for_text("main", "One-page checkout").await;
    accept_confirms(&b).await;

    // Someone else changes it after the page was rendered: the pause is refused.
    let e = server
        .store
        .get_experiment("demo", "development", "checkout-test")
        .await
        .unwrap();
    server
        .store
        .experiment_step(
            "user:other@example.com",
            "demo",
            "development",
            "checkout-test",
            e.version,
            switchyard_store::ExperimentStep::Pause,
        )
        .await
        .unwrap();
    b.click("button[data-call$='/pause']").await;
    b.wait_for_text("#page-alert", "Someone else saved a change")
        .await;

    // Reloaded: it is paused; resume, pause, stop with a winner.
    b.goto(page).await;
    b.wait_for_text("main", "Paused").await;
    b.click("button[data-call$='/resume']").await;
    b.wait_for_text(".head", "Running").await;
    b.click("button[data-call$='/pause']").await;
    b.wait_for_text(".head", "Paused").await;
    accept_confirms(&b).await;
    b.select("#stop-winner", "one-page").await;
    b.click("form[data-api$='/stop'] button[type=submit]").await;
    b.wait_for_text(".head", "Shipped: one-page").await;
    let e = server
        .store
        .get_experiment("demo", "development", "checkout-test")
        .await
        .unwrap();
    assert_eq!(
        (e.status, e.winner.as_deref()),
        (ExperimentStatus::Stopped, Some("one-page"))
    );
    // Restart as a new phase.
    accept_confirms(&b).await;
    b.click("form[data-api$='/restart'] button[type=submit]")
        .await;
    b.wait_for_text(".head", "Running").await;
    let e = server
        .store
        .get_experiment("demo", "development", "checkout-test")
        .await
        .unwrap();
    assert_eq!((e.status, e.phase), (ExperimentStatus::Running, 1));

    // A coverage ramp through the edit form keeps the rest as it was.
    b.click("details.edit summary").await;
    b.fill("#edit-coverage", "25").await;
    b.click("details.edit button[type=submit]").await;
    b.wait_for_text("main", "25% · unit").await;
    let after = server
        .store
        .get_experiment("demo", "development", "checkout-test")
        .await
        .unwrap();
    assert_eq!(after.coverage, 2_500);
    assert_eq!(
        (after.variations, after.metrics),
        (e.variations, e.metrics),
        "the ramp changed nothing else"
    );

    // A draft: no results yet, then started from its page.
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/projects/demo/environments/development/experiments",
            server.url
        ))
        .bearer_auth(&server.admin_key)
        .json(&json!({"key": "drafty", "flag": "new-search", "name": "Drafty",
            "variations": [{"variation": "off", "weight": 5000}, {"variation": "on", "weight": 5000}],
            "metrics": ["purchase"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    b.goto("/ui/p/demo/experiments/development/drafty").await;
    let text = b.wait_for_text("main", "Change the draft").await;
    assert!(text.contains("once the experiment is started"), "{text}");
    let problems = b.accessibility_problems().await;
    assert!(problems.is_empty(), "{problems:#?}");
    b.click("button[data-call$='/start']").await;
    b.wait_for_text(".head", "Running").await;
    let drafty = server
        .store
        .get_experiment("demo", "development", "drafty")
        .await
        .unwrap();
    assert_eq!(drafty.status, ExperimentStatus::Running);
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_experiments_results_and_metrics_without_any_control() {
    let server = server().await;
    add_user(&server, "vic@example.com", Role::Viewer).await;
    let b = Browser::open(&server).await;
    b.sign_in("vic@example.com", PASSWORD).await;

    b.goto("/ui/p/demo/experiments?env=production").await;
    let text = b.wait_for_text("main", "One-page checkout").await;
    assert!(!text.contains("New experiment"), "{text}");
    b.goto("/ui/p/demo/experiments/production/checkout-test")
        .await;
    let text = b.wait_for_text("main", "Results").await;
    assert!(text.contains("One-page checkout"), "{text}");
    assert!(!b.exists("button[data-call]").await, "no lifecycle button");
    assert!(!b.exists("form[data-api]").await, "no lifecycle form");
    assert!(!text.contains("Decide"), "{text}");

    // Units split 3:1 against weights of 1:1: the mismatch is the first
    // thing the results say.
    let key = sdk_key(&server, "production").await;
    let t = now_ms() + 1_000;
    let events: Vec<Value> = (0..400)
        .map(|u| {
            json!({"type": "exposure", "unit": format!("u-{u}"), "experiment": "checkout-test",
                "variation": if u % 4 == 0 { "one-page" } else { "classic" }, "time": t})
        })
        .collect();
    send(&server, &key, &events).await;
    let text = b
        .wait_for_text_for("#results", "Sample ratio mismatch", Duration::from_secs(30))
        .await;
    assert!(text.contains("do not trust these results"), "{text}");
    let first = b
        .eval("return document.querySelector('#results .alert')?.textContent ?? ''")
        .await;
    assert!(
        first
            .as_str()
            .unwrap_or("")
            .contains("Sample ratio mismatch"),
        "the first alert of the results: {first}"
    );
    // A guardrail alert of the monitor is shown with the metric's name.
    server
        .store
        .record_experiment_alert(
            "system:guardrails",
            "demo",
            "production",
            "checkout-test",
            switchyard_store::AlertInput {
                phase: 0,
                kind: "guardrail_harmed".into(),
                metric: Some("revenue".into()),
                variation: Some("one-page".into()),
                message: "revenue is significantly lower in one-page".into(),
                action: "recorded".into(),
            },
        )
        .await
        .unwrap();
    b.wait_for_text_for(
        "#results",
        "Guardrail harmed: Revenue per unit in one-page",
        Duration::from_secs(15),
    )
    .await;
    b.eval("document.getElementById('results').scrollIntoView(); return true")
        .await;
    b.screenshot("experiment-results-srm", false).await;

    // The create page is refused; so is a missing experiment, politely.
    b.goto("/ui/p/demo/experiments/new").await;
    b.wait_for_text("main", "does not allow").await;
    b.goto("/ui/p/demo/experiments/production/nope").await;
    b.wait_for_text("main", "Not found").await;
    b.goto("/ui/p/nope/experiments").await;
    b.wait_for_text("main", "No such project").await;

    // Metrics: readable, not editable.
    b.goto("/ui/p/demo/metrics").await;
    let text = b.wait_for_text("main", "Purchase rate").await;
    assert!(!text.contains("New metric"), "{text}");
    b.goto("/ui/p/demo/metrics/purchase").await;
    b.wait_for_text("main", "lets you read").await;
    assert!(!b.exists("form[data-api] button[type=submit]").await);
    assert!(!b.exists("button[data-call]").await);
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_created_and_edited_with_the_apis_errors_beside_the_field() {
    let server = server().await;
    add_user(&server, "ann@example.com", Role::Editor).await;
    let b = Browser::open(&server).await;
    b.sign_in("ann@example.com", PASSWORD).await;
    b.goto("/ui/p/demo/metrics").await;
    b.wait_for_text("main", "Revenue per unit").await;
    b.screenshot("metrics", true).await;

    b.click("a[href='/ui/p/demo/metrics/new']").await;
    b.wait_for_text("main", "New metric").await;
    // The denominator shows only for ratio metrics.
    assert!(
        !b.find("#denominator-event")
            .await
            .is_displayed()
            .await
            .unwrap()
    );
    b.fill("#key", "checkout-rate").await;
    b.fill("#name", "Checkouts per visit").await;
    b.select("#kind", "ratio").await;
    assert!(
        b.find("#denominator-event")
            .await
            .is_displayed()
            .await
            .unwrap()
    );
    b.fill("#numerator-event", "checkout").await;
    b.fill(
        "#numerator-conditions",
        "[{\"attribute\": \"plan\", \"op\": \"matches\", \"value\": \"(pro\"}]",
    )
    .await;
    b.fill("#denominator-event", "visit").await;
    let problems = b.accessibility_problems().await;
    assert!(problems.is_empty(), "{problems:#?}");
    b.screenshot("metric-form", true).await;
    b.click("form[data-api] button[type=submit]").await;
    // The API's error (a bad regex) is shown beside the conditions.
    b.wait_for_text(".form-alert", "Not saved").await;
    let invalid = b
        .eval("return document.querySelector('[aria-invalid=true]')?.id ?? null")
        .await;
    assert_eq!(invalid, json!("numerator-conditions"));
    let beside = b.text("#numerator-conditions ~ .field-error").await;
    assert!(beside.contains("regex"), "{beside}");

    b.fill("#numerator-conditions", "").await;
    b.select("#cap-mode", "fixed").await;
    b.fill("#cap-fixed", "10").await;
    b.fill("#window_hours", "72").await;
    b.click("form[data-api] button[type=submit]").await;
    b.wait_for_path("/ui/p/demo/metrics/checkout-rate").await;
    let m = server
        .store
        .get_metric("demo", "checkout-rate")
        .await
        .unwrap();
    let d = serde_json::to_value(&m.definition).unwrap();
    assert_eq!(d["kind"], "ratio");
    assert_eq!(d["denominator"]["event"], "visit");
    assert_eq!(d["cap"], json!({"fixed": 10.0}));
    assert_eq!(d["window_hours"], 72);

    // Edit: the form comes back filled in; a change is saved with If-Match.
    b.wait_for_text("main", "Checkouts per visit").await;
    b.fill("#name", "Checkouts per site visit").await;
    b.select("#direction", "lower").await;
    b.click("form[data-api] button[type=submit]").await;
    b.wait_for_text(".head", "version 2").await;
    let m = server
        .store
        .get_metric("demo", "checkout-rate")
        .await
        .unwrap();
    assert_eq!(m.definition.name, "Checkouts per site visit");
    assert_eq!(
        m.definition.denominator.map(|d| d.event).as_deref(),
        Some("visit")
    );
    assert_eq!(
        serde_json::to_value(m.definition.direction).unwrap(),
        "lower"
    );
    b.close().await;
    server.stop().await;
}
