//! The flag and segment pages in a real headless Chromium: creating a flag
//! and its targeting in the UI and seeing evaluation follow, the
//! compiler's errors beside their field, a conflicting edit, what a viewer
//! sees, segments used in a rule, and the list with 1,000 flags.

mod common;

use std::time::{Duration, Instant};

use common::browser::{Browser, PASSWORD, add_user};
use common::{Backend, TestServer, start};
use serde_json::{Value, json};
use switchyard_store::{ApiKeyInput, ApiKeyKind, FlagInput, Role};

const EDITOR: &str = "eve@example.com";

/// A client SDK key of `env` in the demo project.
async fn sdk_key(server: &TestServer, env: &str) -> String {
    server
        .store
        .create_api_key(
            "system:test",
            ApiKeyInput {
                name: format!("sdk-{env}"),
                kind: ApiKeyKind::Client,
                project: Some("demo".into()),
                environment: Some(env.into()),
            },
        )
        .await
        .expect("sdk key")
        .secret
}

/// The value OFREP gives for `flag` and `context`.
async fn evaluate(server: &TestServer, key: &str, flag: &str, context: Value) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{}/ofrep/v1/evaluate/flags/{flag}", server.url))
        .bearer_auth(key)
        .json(&json!({ "context": context }))
        .send()
        .await
        .expect("evaluate");
    let status = resp.status();
    let body: Value = resp.json().await.expect("JSON");
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// Through the API with the admin key: `(status, body)`.
async fn api(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    etag: Option<i64>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}/api/v1{path}", server.url))
        .bearer_auth(&server.admin_key);
    if let Some(v) = etag {
        req = req.header("If-Match", format!("\"{v}\""));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("api call");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn create_bool_flag(server: &TestServer, key: &str) {
    let (status, body) = api(
        server,
        reqwest::Method::POST,
        "/projects/demo/flags",
        None,
        Some(json!({
            "key": key, "name": key, "type": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Adds a rule with one condition in `env` of the open flag editor and
/// returns the rule's CSS selector.
async fn add_rule(b: &Browser, env: &str, attribute: &str, op: &str, value: &str, serve: &str) {
    let before = b.find_all(&format!("#env-{env} .rule")).await.len();
    press(b, &format!("#env-{env} .rules ~ button[data-add]")).await;
    let rule = rule_at(env, before + 1);
    press(b, &format!("{rule} .conditions > button[data-add]")).await;
    let cond = format!("{rule} .condition");
    b.fill(&format!("{cond} input[data-key=attribute]"), attribute)
        .await;
    b.select(&format!("{cond} select[data-key=op]"), op).await;
    let input = match op {
        "in" | "not_in" => "textarea[data-type=lines-json]",
        "in_segment" | "not_in_segment" => "textarea[data-type=lines]",
        "matches" | "not_matches" | "contains" => "input[data-key=value]:not([data-type])",
        _ => "input[data-type=json-or-string]",
    };
    b.fill(&format!("{cond} {input}"), value).await;
    b.select(&format!("{rule} .serve select[data-key=variation]"), serve)
        .await;
}

/// Clicks `css` after scrolling it to the middle of the window (the save
/// bar sticks to the bottom).
async fn press(b: &Browser, css: &str) {
    let sel = serde_json::to_string(css).expect("selector");
    b.find(css).await;
    b.eval(&format!(
        "document.querySelector({sel}).scrollIntoView({{block: 'center'}}); return true"
    ))
    .await;
    b.click(css).await;
}

/// The `n`th rule (from 1) of `env` in the flag editor (the list's first
/// child is its error line).
fn rule_at(env: &str, n: usize) -> String {
    format!("#env-{env} .rules > .rule:nth-child({})", n + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_creates_a_flag_with_a_rule_turns_it_on_and_evaluation_follows() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, EDITOR, Role::Editor).await;
    let key = sdk_key(&server, "production").await;
    let b = Browser::open(&server).await;
    b.sign_in(EDITOR, PASSWORD).await;

    b.goto("/ui/p/demo/flags/new").await;
    b.fill("#name", "Beta banner").await;
    b.fill("#key", "beta-banner").await;
    b.fill("#tags", "web, beta").await;
    b.screenshot("flag-new", true).await;
    let problems = b.accessibility_problems().await;
    assert!(problems.is_empty(), "{problems:#?}");
    press(&b, "main form button[type=submit]").await;
    b.wait_for_path("/ui/p/demo/flags/beta-banner").await;
    b.wait_for_text("main", "Targeting in Production").await;

    // Before anything is on, everyone gets the off variation.
    let nl = json!({"targetingKey": "u1", "country": "NL"});
    let us = json!({"targetingKey": "u2", "country": "US"});
    assert_eq!(
        evaluate(&server, &key, "beta-banner", nl.clone()).await["value"],
        false
    );

    add_rule(&b, "production", "country", "in", "NL, BE", "on").await;
    press(&b, "#flag-form .savebar button[type=submit]").await;
    b.wait_for_text("main", "version 2").await;
    let saved = server
        .store
        .get_flag("demo", "beta-banner")
        .await
        .expect("flag");
    let rules = &saved.environments["production"].rules;
    assert_eq!(rules.len(), 1, "{saved:?}");
    assert_eq!(
        serde_json::to_value(&rules[0]).expect("json"),
        json!({"conditions": [{"attribute": "country", "op": "in", "value": ["NL", "BE"]}], "serve": {"variation": "on"}})
    );
    assert_eq!(saved.tags, ["web", "beta"]);
    // Still off: the rule does not serve yet.
    assert_eq!(
        evaluate(&server, &key, "beta-banner", nl.clone()).await["value"],
        false
    );
    b.screenshot("flag-editor", true).await;
    let problems = b.accessibility_problems().await;
    assert!(problems.is_empty(), "{problems:#?}");

    // The quick switch turns it on in production only.
    press(&b, "button[aria-label='Turn beta-banner on in Production']").await;
    b.find("button[aria-label='Turn beta-banner off in Production']")
        .await;
    let on = evaluate(&server, &key, "beta-banner", nl).await;
    assert_eq!(on["value"], true, "{on}");
    assert_eq!(on["variant"], "on", "{on}");
    let other = evaluate(&server, &key, "beta-banner", us).await;
    assert_eq!(other["value"], false, "{other}");
    let flag = server
        .store
        .get_flag("demo", "beta-banner")
        .await
        .expect("flag");
    assert!(flag.environments["production"].enabled);
    assert!(!flag.settings_for("development").enabled);

    // The recent changes name the editor; the list shows it on.
    let text = b.text("main").await;
    assert!(text.contains(&format!("user:{EDITOR}")), "{text}");
    b.goto("/ui/p/demo/flags?q=beta").await;
    let list = b.wait_for_text("main", "Beta banner").await;
    assert!(list.contains("On"), "{list}");
    b.screenshot("flag-list", true).await;

    // The same switch in the list turns it off again.
    press(
        &b,
        "button[aria-label='Turn beta-banner off in Production']",
    )
    .await;
    b.find("button[aria-label='Turn beta-banner on in Production']")
        .await;
    let nl = json!({"targetingKey": "u1", "country": "NL"});
    assert_eq!(
        evaluate(&server, &key, "beta-banner", nl).await["value"],
        false
    );
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compiler_error_shows_beside_its_field_and_nothing_is_saved() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, EDITOR, Role::Editor).await;
    create_bool_flag(&server, "regex-flag").await;
    let b = Browser::open(&server).await;
    b.sign_in(EDITOR, PASSWORD).await;
    b.goto("/ui/p/demo/flags/regex-flag").await;
    // A first, valid rule, so the bad one is the second: the error must
    // find rules[1], not the first rule.
    add_rule(&b, "production", "country", "equals", "NL", "on").await;
    add_rule(&b, "production", "email", "matches", "([a-z", "on").await;
    press(&b, "#flag-form .savebar button[type=submit]").await;
    let alert = b.wait_for_text(".savebar .form-alert", "regex").await;
    assert!(alert.contains("Not saved"), "{alert}");
    let second = format!("{} .condition", rule_at("production", 2));
    let beside = b
        .wait_for_text(&format!("{second} .field-error"), "invalid regex")
        .await;
    assert!(
        !beside.contains("environment \"production\""),
        "beside the field, without the path: {beside}"
    );

    assert!(
        b.exists(&format!(
            "{second} input[data-key=value][aria-invalid=true]"
        ))
        .await
    );
    assert!(
        !b.exists(&format!("{} [aria-invalid]", rule_at("production", 1)))
            .await,
        "the valid rule is not marked"
    );
    b.screenshot("flag-compiler-error", false).await;
    let flag = server
        .store
        .get_flag("demo", "regex-flag")
        .await
        .expect("flag");
    assert_eq!(flag.version, 1);
    assert!(flag.settings_for("production").rules.is_empty());

    // Weights that do not add up are named at the rollout.
    b.goto("/ui/p/demo/flags/regex-flag").await;
    b.select("#e-development-ft-kind", "split").await;
    b.fill("#e-development-ft-w0", "70").await;
    b.fill("#e-development-ft-w1", "20").await;
    press(&b, "#flag-form .savebar button[type=submit]").await;
    b.wait_for_text(".savebar .form-alert", "10000").await;
    let weights = b
        .text("#env-development [data-obj=fallthrough] .weights > .field-error")
        .await;
    assert!(weights.contains("weights add up to 9000"), "{weights}");
    assert_eq!(
        server
            .store
            .get_flag("demo", "regex-flag")
            .await
            .expect("flag")
            .version,
        1
    );

    // And a good split saves.
    b.fill("#e-development-ft-w1", "30").await;
    press(&b, "#flag-form .savebar button[type=submit]").await;
    b.wait_for_text("main", "version 2").await;
    let flag = server
        .store
        .get_flag("demo", "regex-flag")
        .await
        .expect("flag");
    assert_eq!(
        serde_json::to_value(&flag.environments["development"].fallthrough).expect("json"),
        json!({"split": {"bucket_by": "targetingKey", "weights": [{"variation": "on", "weight": 7000}, {"variation": "off", "weight": 3000}]}})
    );

    // Rules keep the order they are given: the second moved above the first.
    add_rule(&b, "production", "country", "equals", "NL", "on").await;
    add_rule(&b, "production", "country", "equals", "BE", "off").await;
    press(
        &b,
        &format!("{} button[data-move=up]", rule_at("production", 2)),
    )
    .await;
    press(&b, "#flag-form .savebar button[type=submit]").await;
    b.wait_for_text("main", "version 3").await;
    let rules = server
        .store
        .get_flag("demo", "regex-flag")
        .await
        .expect("flag")
        .environments["production"]
        .rules
        .clone();
    let order: Vec<Value> = rules
        .iter()
        .map(|r| r.conditions[0].value.clone())
        .collect();
    assert_eq!(order, [json!("BE"), json!("NL")]);
    // And a removed rule is gone.
    press(
        &b,
        &format!(
            "{} .item-head button[data-remove]",
            rule_at("production", 1)
        ),
    )
    .await;
    press(&b, "#flag-form .savebar button[type=submit]").await;
    b.wait_for_text("main", "version 4").await;
    let rules = server
        .store
        .get_flag("demo", "regex-flag")
        .await
        .expect("flag")
        .environments["production"]
        .rules
        .clone();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].conditions[0].value, json!("NL"));
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_after_someone_elses_change_shows_the_conflict_and_overwrites_nothing() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, EDITOR, Role::Editor).await;
    create_bool_flag(&server, "contested").await;
    let b = Browser::open(&server).await;
    b.sign_in(EDITOR, PASSWORD).await;
    b.goto("/ui/p/demo/flags/contested").await;
    b.fill("#name", "My new name").await;

    // Someone turns it on through the API meanwhile.
    let (status, body) = api(
        &server,
        reqwest::Method::PATCH,
        "/projects/demo/flags/contested/environments/production",
        Some(1),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    press(&b, "#flag-form .savebar button[type=submit]").await;
    let alert = b
        .wait_for_text(".savebar .form-alert", "Someone else")
        .await;
    assert!(alert.contains("Nothing was saved"), "{alert}");
    b.screenshot("flag-conflict", true).await;
    // What was typed is still there; the other change stands.
    let typed = b.eval("return document.getElementById('name').value").await;
    assert_eq!(typed, "My new name");
    let flag = server
        .store
        .get_flag("demo", "contested")
        .await
        .expect("flag");
    assert_eq!(flag.name, "contested");
    assert_eq!(flag.version, 2);
    assert!(flag.environments["production"].enabled);
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_edit_controls_and_the_api_refuses_their_writes() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, "vic@example.com", Role::Viewer).await;
    create_bool_flag(&server, "watched").await;
    let b = Browser::open(&server).await;
    b.sign_in("vic@example.com", PASSWORD).await;
    b.goto("/ui/p/demo/flags/watched").await;
    let text = b.wait_for_text("main", "Targeting in Production").await;
    assert!(!b.exists("form[data-api]").await, "no editor form");
    assert!(!b.exists("button[data-call]").await, "no switches");
    assert!(!b.exists("main input, main select, main textarea").await);
    assert!(!text.contains("Turn on"), "{text}");
    let problems = b.accessibility_problems().await;
    assert!(problems.is_empty(), "{problems:#?}");
    b.goto("/ui/p/demo/flags").await;
    b.wait_for_text("main", "watched").await;
    assert!(
        !b.exists("button[data-call]").await,
        "no switches in the list"
    );
    b.goto("/ui/p/demo/flags/new").await;
    b.wait_for_text("main", "does not allow").await;
    b.goto("/ui/p/demo/segments").await;
    let segs = b.wait_for_text("main", "Segments").await;
    assert!(!segs.contains("New segment"), "{segs}");
    b.goto("/ui/p/demo/flags/no-such-flag").await;
    b.wait_for_text("main", "No such flag").await;

    // The page's own script, with the CSRF token, is refused by the API.
    let status = b
        .eval(
            "return fetch('/api/v1/projects/demo/flags/watched/environments/production', {method: 'PATCH', \
             credentials: 'same-origin', headers: {'Content-Type': 'application/json', 'If-Match': '\"1\"', \
             'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content}, \
             body: '{\"enabled\": true}'}).then(r => r.status)",
        )
        .await;
    assert_eq!(status, 403);
    assert!(
        !server
            .store
            .get_flag("demo", "watched")
            .await
            .expect("flag")
            .settings_for("production")
            .enabled
    );
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_made_in_the_ui_targets_a_flag_rule() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, EDITOR, Role::Editor).await;
    create_bool_flag(&server, "for-testers").await;
    let key = sdk_key(&server, "production").await;
    let b = Browser::open(&server).await;
    b.sign_in(EDITOR, PASSWORD).await;

    b.goto("/ui/p/demo/segments").await;
    press(&b, "a[href='/ui/p/demo/segments/new']").await;
    b.fill("#name", "Early birds").await;
    b.fill("#key", "early-birds").await;
    b.fill("#included", "alice\ncarol").await;
    b.fill("#excluded", "mallory").await;
    // Anyone on the pro plan is in it too.
    press(&b, ".rules ~ button[data-add]").await;
    press(&b, ".rule .conditions > button[data-add]").await;
    b.fill(".rule .condition input[data-key=attribute]", "plan")
        .await;
    b.fill(".rule .condition input[data-type=json-or-string]", "pro")
        .await;
    assert!(
        !b.exists(".rule .condition select[data-key=op] option[value=in_segment]")
            .await,
        "segment rules offer no segment operators"
    );
    press(&b, "main form button[type=submit]").await;
    b.wait_for_path("/ui/p/demo/segments/early-birds").await;
    b.wait_for_text("main", "version 1").await;
    let seg = server
        .store
        .get_segment("demo", "early-birds")
        .await
        .expect("segment");
    assert_eq!(seg.included, ["alice", "carol"]);
    assert_eq!(seg.excluded, ["mallory"]);
    assert_eq!(
        serde_json::to_value(&seg.rules).expect("json"),
        json!([{"conditions": [{"attribute": "plan", "op": "equals", "value": "pro"}]}])
    );
    b.screenshot("segment-editor", true).await;
    let problems = b.accessibility_problems().await;
    assert!(problems.is_empty(), "{problems:#?}");

    // A bad regex in a segment is shown beside it, too.
    b.select(".rule .condition select[data-key=op]", "matches")
        .await;
    b.fill(
        ".rule .condition input[data-key=value]:not([data-type])",
        "(",
    )
    .await;
    press(&b, "#segment-form .savebar button[type=submit]").await;
    let beside = b
        .wait_for_text(".rule .condition .field-error", "invalid regex")
        .await;
    assert!(!beside.is_empty());
    b.goto("/ui/p/demo/segments/early-birds").await;

    // The segment in a flag's rule.
    b.goto("/ui/p/demo/flags/for-testers").await;
    add_rule(
        &b,
        "production",
        "targetingKey",
        "in_segment",
        "early-birds",
        "on",
    )
    .await;
    press(&b, "#flag-form .savebar button[type=submit]").await;
    b.wait_for_text("main", "version 2").await;
    press(&b, "button[aria-label='Turn for-testers on in Production']").await;
    b.find("button[aria-label='Turn for-testers off in Production']")
        .await;
    for (who, plan, expected) in [
        ("alice", "free", true),
        ("bob", "free", false),
        ("dave", "pro", true),
        ("mallory", "pro", false),
    ] {
        let got = evaluate(
            &server,
            &key,
            "for-testers",
            json!({"targetingKey": who, "plan": plan}),
        )
        .await;
        assert_eq!(got["value"], expected, "{who}: {got}");
    }

    // The segment list and page name the flag that uses it.
    b.goto("/ui/p/demo/segments").await;
    let list = b.wait_for_text("main", "Early birds").await;
    assert!(list.contains("for-testers"), "{list}");
    b.screenshot("segment-list", true).await;
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flag_list_shows_a_thousand_flags_quickly() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, EDITOR, Role::Editor).await;
    let envs = server.store.list_environments("demo").await.expect("envs");
    for i in 0..1000 {
        let input: FlagInput = serde_json::from_value(json!({
            "key": format!("bulk-{i:04}"), "name": format!("Bulk flag {i}"), "type": "boolean",
            "tags": [if i % 2 == 0 { "even" } else { "odd" }],
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        }))
        .expect("input");
        server
            .store
            .create_flag("system:test", "demo", input)
            .await
            .expect("create");
    }
    // The server renders the page in one read of the flags.
    let user = server
        .store
        .check_login(EDITOR, PASSWORD)
        .await
        .expect("login")
        .expect("user");
    let session = server
        .store
        .create_session(&user.id, time::Duration::hours(1))
        .await
        .expect("session");
    let started = Instant::now();
    let page = reqwest::Client::new()
        .get(format!("{}/ui/p/demo/flags", server.url))
        .header("Cookie", format!("sy_session={}", session.token))
        .send()
        .await
        .expect("list page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    let took = started.elapsed();
    // A page of 100 (sorted by key), the others a link away.
    assert!(
        html.contains("bulk-0099") && !html.contains("bulk-0100"),
        "one page of 100"
    );
    assert!(
        html.contains("Showing 1–100 of 1005."),
        "the count of all flags"
    );

    let b = Browser::open(&server).await;
    b.sign_in(EDITOR, PASSWORD).await;
    b.goto("/ui/p/demo/flags").await;
    b.find("a[href='/ui/p/demo/flags/bulk-0099']").await;
    let rows = b.find_all("tbody tr").await.len();
    assert_eq!(rows, 100);
    // Every flag has a switch per environment.
    let switches = b.find_all("tbody button[data-call]").await.len();
    assert_eq!(switches, rows * envs.len());
    assert!(
        took < Duration::from_secs(3),
        "the list of 1,000 flags took {took:?}"
    );
    // The last page, through the links.
    for _ in 0..10 {
        b.click("a[rel=next]").await;
    }
    b.wait_for_text("main", "Page 11 of 11").await;
    b.find("a[href='/ui/p/demo/flags/welcome-banner']").await;
    assert_eq!(b.find_all("tbody tr").await.len(), 5);
    b.goto("/ui/p/demo/flags?tag=odd&q=bulk").await;
    let text = b.wait_for_text("main", "of 500 matching").await;
    assert!(text.contains("Bulk flag 1"), "{text}");
    // Paging keeps the filters.
    b.click("a[rel=next]").await;
    let text = b
        .wait_for_text("main", "Showing 101–200 of 500 matching")
        .await;
    assert!(
        text.contains("Bulk flag 201") && !text.contains("Bulk flag 200 "),
        "{text}"
    );
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_create_page_types_variation_values_by_the_flag_type() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, EDITOR, Role::Editor).await;
    let b = Browser::open(&server).await;
    b.sign_in(EDITOR, PASSWORD).await;
    b.goto("/ui/p/demo/flags/new").await;
    b.fill("#name", "Button colour").await;
    b.fill("#key", "button-colour").await;
    b.select("#type", "string").await;
    b.fill("#var0-key", "blue").await;
    b.fill("#var0-value-string", "#0000ff").await;
    b.fill("#var1-key", "green").await;
    b.fill("#var1-value-string", "true").await;
    // A third, added in the page, typed as a string too.
    press(&b, "[data-list=variations] ~ button[data-add]").await;
    b.fill(
        "[data-list=variations] > .variation:nth-child(4) input[data-key=key]",
        "red",
    )
    .await;
    b.fill(
        "[data-list=variations] > .variation:nth-child(4) [data-when-type=string] input",
        "#ff0000",
    )
    .await;
    press(&b, "main form button[type=submit]").await;
    b.wait_for_path("/ui/p/demo/flags/button-colour").await;
    let flag = server
        .store
        .get_flag("demo", "button-colour")
        .await
        .expect("flag");
    assert_eq!(
        serde_json::to_value(&flag.variations).expect("json"),
        json!([
            {"key": "blue", "value": "#0000ff"},
            {"key": "green", "value": "true"},
            {"key": "red", "value": "#ff0000"}
        ])
    );

    // A JSON flag's value must be JSON: the error is beside the value.
    b.goto("/ui/p/demo/flags/new").await;
    b.fill("#name", "Layout").await;
    b.fill("#key", "layout").await;
    b.select("#type", "json").await;
    b.fill("#var0-value-json", "{\"columns\": 2}").await;
    b.fill("#var1-value-json", "{not json").await;
    press(&b, "main form button[type=submit]").await;
    b.wait_for_text("main form .form-alert", "Not valid JSON")
        .await;
    assert!(b.exists("#var1-value-json[aria-invalid=true]").await);
    assert!(matches!(
        server.store.get_flag("demo", "layout").await,
        Err(switchyard_store::StoreError::NotFound { .. })
    ));
    b.close().await;
    server.stop().await;
}
