//! OFREP over plain HTTP, checked against the protocol's `service/openapi.yaml`:
//! every reason, the error shapes and status codes, bulk ETag and 304,
//! authentication and rate limiting, on both store backends.

mod common;

use common::{BACKENDS, Backend, TestServer, start, start_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_server::ServerConfig;
use switchyard_store::{ApiKeyInput, ApiKeyKind, FlagInput};

const ACTOR: &str = "test";

/// Flags of every type and every reason, in `demo`'s production
/// environment (names start with `t-` so demo flags cannot collide).
fn test_flags() -> Vec<FlagInput> {
    let on_off = json!([{"key": "on", "value": true}, {"key": "off", "value": false}]);
    let flags = [
        json!({"key": "t-bool", "name": "bool", "type": "boolean", "variations": on_off,
               "environments": {"production": {"enabled": true, "off_variation": "off",
                                               "fallthrough": {"variation": "on"}}}}),
        json!({"key": "t-string", "name": "string", "type": "string",
               "variations": [{"key": "classic", "value": "classic"},
                              {"key": "one-page", "value": "one-page"}],
               "environments": {"production": {"enabled": true, "off_variation": "classic",
                   "rules": [{"id": "staff", "conditions": [
                       {"attribute": "email", "op": "ends_with", "value": "@example.com"}],
                       "serve": {"variation": "one-page"}}],
                   "fallthrough": {"variation": "classic"}}}}),
        json!({"key": "t-int", "name": "int", "type": "number",
               "variations": [{"key": "ten", "value": 10}, {"key": "fifty", "value": 50}],
               "environments": {"production": {"enabled": true, "off_variation": "ten",
                                               "fallthrough": {"variation": "fifty"}}}}),
        json!({"key": "t-float", "name": "float", "type": "number",
               "variations": [{"key": "pi", "value": 3.25}],
               "environments": {"production": {"enabled": true, "off_variation": "pi",
                                               "fallthrough": {"variation": "pi"}}}}),
        json!({"key": "t-object", "name": "object", "type": "json",
               "variations": [{"key": "blue", "value": {"color": "blue", "size": 3}}],
               "environments": {"production": {"enabled": true, "off_variation": "blue",
                                               "fallthrough": {"variation": "blue"}}}}),
        json!({"key": "t-split", "name": "split", "type": "boolean", "variations": on_off,
               "environments": {"production": {"enabled": true, "off_variation": "off",
                   "fallthrough": {"split": {"weights": [
                       {"variation": "on", "weight": 5000}, {"variation": "off", "weight": 5000}]}}}}}),
        json!({"key": "t-disabled", "name": "disabled", "type": "boolean", "variations": on_off,
               "environments": {"production": {"enabled": false, "off_variation": "off",
                                               "fallthrough": {"variation": "on"}}}}),
        json!({"key": "t-prereq", "name": "prereq", "type": "boolean", "variations": on_off,
               "environments": {"production": {"enabled": true, "off_variation": "off",
                   "prerequisites": [{"flag": "t-disabled", "variations": ["on"]}],
                   "fallthrough": {"variation": "on"}}}}),
    ];
    flags
        .into_iter()
        .map(|f| serde_json::from_value(f).expect("flag input"))
        .collect()
}

struct Keys {
    server: String,
    client: String,
    other_env_client: String,
}

async fn setup(server: &TestServer) -> Keys {
    let store = &server.store;
    for flag in test_flags() {
        store
            .create_flag(ACTOR, "demo", flag)
            .await
            .expect("create flag");
    }
    server
        .state
        .snapshots
        .reload_project("demo", None)
        .await
        .expect("reload");
    let key = |name: &str, kind, env: &str| ApiKeyInput {
        name: name.into(),
        kind,
        project: Some("demo".into()),
        environment: Some(env.into()),
    };
    let server_key = store
        .create_api_key(ACTOR, key("srv", ApiKeyKind::Server, "production"))
        .await
        .expect("server key");
    let client_key = store
        .create_api_key(ACTOR, key("cli", ApiKeyKind::Client, "production"))
        .await
        .expect("client key");
    let dev_key = store
        .create_api_key(ACTOR, key("dev", ApiKeyKind::Client, "development"))
        .await
        .expect("dev key");
    Keys {
        server: server_key.secret,
        client: client_key.secret,
        other_env_client: dev_key.secret,
    }
}

async fn post(
    server: &TestServer,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", server.url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.expect("body"))
}

async fn eval(server: &TestServer, key: &str, flag: &str, context: Value) -> (StatusCode, Value) {
    let (status, headers, body) = post(
        server,
        &format!("/ofrep/v1/evaluate/flags/{flag}"),
        Some(key),
        &json!({"context": context}).to_string(),
    )
    .await;
    assert_eq!(
        headers["content-type"], "application/json",
        "{flag}: {body}"
    );
    (status, serde_json::from_str(&body).expect("JSON body"))
}

fn success(key: &str, value: Value, variant: &str, reason: &str) -> Value {
    json!({"key": key, "value": value, "variant": variant, "reason": reason, "metadata": {}})
}

#[tokio::test]
async fn single_flag_evaluation_serves_every_reason_the_protocol_names() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let keys = setup(&server).await;
        let user = json!({"targetingKey": "user-7"});
        let cases = [
            (
                "t-bool",
                user.clone(),
                success("t-bool", json!(true), "on", "STATIC"),
            ),
            (
                "t-string",
                json!({"targetingKey": "u", "email": "ann@example.com"}),
                success("t-string", json!("one-page"), "one-page", "TARGETING_MATCH"),
            ),
            (
                "t-string",
                json!({"targetingKey": "u", "email": "ann@elsewhere.org"}),
                success("t-string", json!("classic"), "classic", "DEFAULT"),
            ),
            (
                "t-int",
                user.clone(),
                success("t-int", json!(50), "fifty", "STATIC"),
            ),
            (
                "t-float",
                user.clone(),
                success("t-float", json!(3.25), "pi", "STATIC"),
            ),
            (
                "t-object",
                user.clone(),
                success(
                    "t-object",
                    json!({"color": "blue", "size": 3}),
                    "blue",
                    "STATIC",
                ),
            ),
            (
                "t-disabled",
                user.clone(),
                success("t-disabled", json!(false), "off", "DISABLED"),
            ),
            (
                "t-prereq",
                user.clone(),
                // OpenFeature has no PREREQUISITE_FAILED: the off variation
                // is a fallback (DEFAULT), the finer reason is metadata.
                json!({"key": "t-prereq", "value": false, "variant": "off", "reason": "DEFAULT",
                       "metadata": {"switchyard.reason": "PREREQUISITE_FAILED"}}),
            ),
        ];
        for (flag, context, expected) in cases {
            for key in [&keys.client, &keys.server] {
                let (status, body) = eval(&server, key, flag, context.clone()).await;
                assert_eq!(status, StatusCode::OK, "{backend:?} {flag}: {body}");
                assert_eq!(body, expected, "{backend:?} {flag}");
            }
        }

        // A split serves what the frozen bucketing function says, for many units.
        for i in 0..40 {
            let unit = format!("unit-{i}");
            let on = switchyard_core::bucket::bucket("t-split", &unit) < 5000;
            let (status, body) = eval(
                &server,
                &keys.client,
                "t-split",
                json!({"targetingKey": unit}),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let expected = if on {
                success("t-split", json!(true), "on", "SPLIT")
            } else {
                success("t-split", json!(false), "off", "SPLIT")
            };
            assert_eq!(body, expected, "{backend:?} {unit}");
        }
        server.stop().await;
    }
}

/// OpenFeature's resolution reasons, which OFREP's `reason` refers to
/// (open-feature/protocol `service/openapi.yaml`: "An OpenFeature reason
/// code", linking the specification's list). Written out here, not taken
/// from the server, so the test checks the server against the spec.
const SPEC_REASONS: [&str; 8] = [
    "STATIC",
    "TARGETING_MATCH",
    "SPLIT",
    "DISABLED",
    "DEFAULT",
    "CACHED",
    "UNKNOWN",
    "ERROR",
];

#[test]
fn every_reason_the_evaluator_can_give_goes_on_the_wire_as_an_openfeature_reason() {
    use switchyard_core::Reason;
    use switchyard_server::routes::ofrep::wire_reason;
    for reason in Reason::ALL {
        let (wire, detail) = wire_reason(reason);
        assert!(
            SPEC_REASONS.contains(&wire),
            "{reason:?} is sent as {wire}, not an OpenFeature reason"
        );
        // The finer reason is kept only where the wire one differs.
        assert_eq!(detail.is_some(), wire != reason.as_str(), "{reason:?}");
    }
    assert_eq!(
        wire_reason(Reason::PrerequisiteFailed),
        ("DEFAULT", Some("PREREQUISITE_FAILED"))
    );
}

#[tokio::test]
async fn bulk_and_single_evaluations_send_only_openfeature_reasons() {
    let server = start(Backend::Sqlite).await;
    let keys = setup(&server).await;
    let contexts = [
        json!({"targetingKey": "user-7"}),
        json!({"targetingKey": "u", "email": "ann@example.com"}),
        json!({"targetingKey": "u", "email": "ann@elsewhere.org", "country": "DE"}),
        json!({}),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for context in &contexts {
        let (status, _, body) = post(
            &server,
            "/ofrep/v1/evaluate/flags",
            Some(&keys.client),
            &json!({"context": context}).to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let body: Value = serde_json::from_str(&body).expect("JSON");
        let items = body["flags"].as_array().expect("flags");
        for item in items {
            let key = item["key"].as_str().expect("key");
            if let Some(reason) = item.get("reason") {
                let reason = reason.as_str().expect("reason is a string");
                assert!(SPEC_REASONS.contains(&reason), "{key}: {reason}");
                seen.insert(reason.to_string());
            }
            let (status, single) = eval(&server, &keys.client, key, context.clone()).await;
            if status == StatusCode::OK {
                let reason = single["reason"].as_str().expect("reason");
                assert!(SPEC_REASONS.contains(&reason), "{key}: {reason}");
                assert_eq!(single["reason"], item["reason"], "{key}");
                assert_eq!(single["metadata"], item["metadata"], "{key}");
            }
        }
    }
    // The flags of `setup` reach every reason the evaluator gives.
    for reason in ["STATIC", "DEFAULT", "TARGETING_MATCH", "SPLIT", "DISABLED"] {
        assert!(seen.contains(reason), "{reason} not seen in {seen:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn evaluation_errors_use_the_protocols_status_codes_and_shapes() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let keys = setup(&server).await;

        let (status, body) = eval(&server, &keys.client, "no-such-flag", json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{backend:?}");
        assert_eq!(body["key"], "no-such-flag");
        assert_eq!(body["errorCode"], "FLAG_NOT_FOUND");
        assert!(body["errorDetails"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(body.get("value").is_none(), "{body}");

        // A split cannot bucket a unit without a targeting key.
        let (status, body) = eval(&server, &keys.client, "t-split", json!({"plan": "pro"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{backend:?}");
        assert_eq!(body["key"], "t-split");
        assert_eq!(body["errorCode"], "TARGETING_KEY_MISSING");
        assert!(body["errorDetails"].is_string());

        // A key evaluates its own environment: the flag is off in development.
        let (status, body) = eval(
            &server,
            &keys.other_env_client,
            "t-bool",
            json!({"targetingKey": "u"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, success("t-bool", json!(false), "off", "DISABLED"));

        let (status, body) =
            eval(&server, &keys.client, "t-bool", json!({"targetingKey": 42})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({"key": "t-bool", "errorCode": "INVALID_CONTEXT",
                                "errorDetails": "context.targetingKey must be a string"})
        );

        let (status, body) =
            eval(&server, &keys.client, "t-bool", json!(["not", "an object"])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["errorCode"], "INVALID_CONTEXT", "{body}");
        server.stop().await;
    }
}

#[tokio::test]
async fn a_malformed_body_is_a_400_in_the_ofrep_error_shape_never_a_5xx() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let keys = setup(&server).await;
        for bad in [
            "{\"context\": ",
            "not json",
            "[1, 2]",
            "\"context\"",
            "{\"context\": {\"a\": }}",
        ] {
            let (status, _, text) = post(
                &server,
                "/ofrep/v1/evaluate/flags/t-bool",
                Some(&keys.client),
                bad,
            )
            .await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{backend:?} {bad:?}: {text}"
            );
            let body: Value = serde_json::from_str(&text).expect("JSON error body");
            assert_eq!(body["key"], "t-bool", "{bad:?}");
            assert_eq!(body["errorCode"], "PARSE_ERROR", "{bad:?}");
            assert!(body["errorDetails"].is_string());

            let (status, _, text) =
                post(&server, "/ofrep/v1/evaluate/flags", Some(&keys.client), bad).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{backend:?} bulk {bad:?}: {text}"
            );
            let body: Value = serde_json::from_str(&text).expect("JSON error body");
            assert_eq!(body["errorCode"], "PARSE_ERROR", "bulk {bad:?}");
            assert!(body["errorDetails"].is_string());
        }
        // An empty body, `{}` and a null context all mean an empty context.
        for empty in ["", "{}", "{\"context\": null}"] {
            let (status, _, text) = post(
                &server,
                "/ofrep/v1/evaluate/flags/t-bool",
                Some(&keys.client),
                empty,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{empty:?}: {text}");
        }
        // A body over the size limit is refused before it is read whole.
        let huge = format!("{{\"context\": {{\"x\": \"{}\"}}}}", "a".repeat(2 << 20));
        let (status, _, _) = post(
            &server,
            "/ofrep/v1/evaluate/flags/t-bool",
            Some(&keys.client),
            &huge,
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        server.stop().await;
    }
}

#[tokio::test]
async fn bulk_evaluation_returns_every_flag_with_an_etag_and_answers_304_when_unchanged() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let keys = setup(&server).await;
        let ctx =
            json!({"context": {"targetingKey": "user-7", "email": "a@example.com"}}).to_string();
        let (status, headers, text) = post(
            &server,
            "/ofrep/v1/evaluate/flags",
            Some(&keys.client),
            &ctx,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{backend:?}: {text}");
        let etag = headers["etag"].to_str().unwrap().to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let body: Value = serde_json::from_str(&text).unwrap();
        let flags = body["flags"].as_array().expect("flags array");
        let by_key = |k: &str| {
            flags
                .iter()
                .find(|f| f["key"] == k)
                .unwrap_or_else(|| panic!("{k} in {body}"))
                .clone()
        };
        assert_eq!(
            by_key("t-bool"),
            success("t-bool", json!(true), "on", "STATIC")
        );
        assert_eq!(
            by_key("t-string"),
            success("t-string", json!("one-page"), "one-page", "TARGETING_MATCH")
        );
        assert_eq!(by_key("t-disabled")["reason"], "DISABLED");
        assert_eq!(by_key("t-split")["reason"], "SPLIT");
        // The demo project's flags are there too.
        assert_eq!(by_key("payments-kill-switch")["value"], true);

        // Same context (keys in another order): 304, same tag, no body.
        let same = r#"{"context": {"email": "a@example.com", "targetingKey": "user-7"}}"#;
        let resp = reqwest::Client::new()
            .post(format!("{}/ofrep/v1/evaluate/flags", server.url))
            .bearer_auth(&keys.client)
            .header("if-none-match", &etag)
            .body(same)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{backend:?}");
        assert_eq!(resp.headers()["etag"], etag.as_str());
        assert!(resp.bytes().await.unwrap().is_empty());

        // Another context: another tag, so a 200.
        let other = json!({"context": {"targetingKey": "user-8"}}).to_string();
        let resp = reqwest::Client::new()
            .post(format!("{}/ofrep/v1/evaluate/flags", server.url))
            .bearer_auth(&keys.client)
            .header("if-none-match", &etag)
            .body(other)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_ne!(resp.headers()["etag"], etag.as_str());

        // A configuration change gives a new tag for the same context.
        let flag = server.store.get_flag("demo", "t-bool").await.unwrap();
        let mut input: FlagInput = serde_json::from_value(json!({
            "key": "t-bool", "name": "bool", "type": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "environments": {"production": {"enabled": false, "off_variation": "off",
                                            "fallthrough": {"variation": "on"}}}}))
        .unwrap();
        input.description = "turned off".into();
        server
            .store
            .update_flag(ACTOR, "demo", "t-bool", flag.version, input)
            .await
            .unwrap();
        server
            .state
            .snapshots
            .reload_project("demo", None)
            .await
            .unwrap();
        let resp = reqwest::Client::new()
            .post(format!("{}/ofrep/v1/evaluate/flags", server.url))
            .bearer_auth(&keys.client)
            .header("if-none-match", &etag)
            .body(ctx)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{backend:?}");
        assert_ne!(resp.headers()["etag"], etag.as_str());
        let body: Value = resp.json().await.unwrap();
        let item = body["flags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == "t-bool")
            .unwrap()
            .clone();
        assert_eq!(item, success("t-bool", json!(false), "off", "DISABLED"));
        server.stop().await;
    }
}

#[tokio::test]
async fn bulk_evaluation_reports_a_failing_flag_as_an_error_item_and_keeps_the_rest() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let keys = setup(&server).await;
        let (status, _, text) = post(
            &server,
            "/ofrep/v1/evaluate/flags",
            Some(&keys.server),
            r#"{"context": {"plan": "pro"}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{backend:?}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        let flags = body["flags"].as_array().unwrap();
        let split = flags.iter().find(|f| f["key"] == "t-split").unwrap();
        assert_eq!(split["errorCode"], "TARGETING_KEY_MISSING", "{split}");
        assert!(split["errorDetails"].is_string());
        assert!(split.get("value").is_none());
        let bool_flag = flags.iter().find(|f| f["key"] == "t-bool").unwrap();
        assert_eq!(bool_flag["value"], true);

        let (status, _, text) = post(
            &server,
            "/ofrep/v1/evaluate/flags",
            Some(&keys.server),
            r#"{"context": {"targetingKey": false}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["errorCode"], "INVALID_CONTEXT", "{body}");
        assert!(body.get("flags").is_none());
        server.stop().await;
    }
}

#[tokio::test]
async fn evaluation_needs_an_sdk_key_bound_to_an_environment() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let _keys = setup(&server).await;
        let ctx = r#"{"context": {"targetingKey": "u"}}"#;
        for path in [
            "/ofrep/v1/evaluate/flags/t-bool",
            "/ofrep/v1/evaluate/flags",
        ] {
            let (status, _, _) = post(&server, path, None, ctx).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{backend:?} {path}");
            let (status, _, _) = post(&server, path, Some("sy_client_wrong"), ctx).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{backend:?} {path}");
            // An admin key manages configuration; it does not evaluate.
            let (status, _, text) = post(&server, path, Some(&server.admin_key), ctx).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{backend:?} {path}: {text}");
        }
        // X-API-Key works as well as a bearer token.
        let keys = setup_keys_only(&server).await;
        let resp = reqwest::Client::new()
            .post(format!("{}/ofrep/v1/evaluate/flags/t-bool", server.url))
            .header("x-api-key", &keys.client)
            .body(ctx)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        server.stop().await;
    }
}

/// Fresh SDK keys for a server whose flags are already set up.
async fn setup_keys_only(server: &TestServer) -> Keys {
    let mk = |kind| ApiKeyInput {
        name: "extra".into(),
        kind,
        project: Some("demo".into()),
        environment: Some("production".into()),
    };
    Keys {
        server: server
            .store
            .create_api_key(ACTOR, mk(ApiKeyKind::Server))
            .await
            .unwrap()
            .secret,
        client: server
            .store
            .create_api_key(ACTOR, mk(ApiKeyKind::Client))
            .await
            .unwrap()
            .secret,
        other_env_client: String::new(),
    }
}

#[tokio::test]
async fn over_the_rate_limit_evaluation_answers_429_with_retry_after() {
    let config = ServerConfig {
        rate_limit_per_key: 1,
        ..ServerConfig::default()
    };
    let server = start_with(Backend::Sqlite, config).await;
    let keys = setup(&server).await;
    let mut limited = None;
    for _ in 0..5 {
        let (status, headers, _) = post(
            &server,
            "/ofrep/v1/evaluate/flags/t-bool",
            Some(&keys.client),
            "{}",
        )
        .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(headers);
            break;
        }
        assert_eq!(status, StatusCode::OK);
    }
    let headers = limited.expect("a 429 within five requests at one per second");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    server.stop().await;
}

/// `flag_evaluations` counts each flag served, single and bulk, per
/// environment; a config change keeps the counts (the counters outlive
/// snapshots).
#[tokio::test]
async fn evaluations_are_counted_per_flag_across_config_changes() {
    let server = start(common::Backend::Sqlite).await;
    let keys = setup(&server).await;
    let count = |text: &str, flag: &str| -> u64 {
        let label = format!(
            "switchyard_flag_evaluations_total{{project=\"demo\",environment=\"production\",flag=\"{flag}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(label.as_str()))
            .map_or(0, |v| v.trim().parse().expect("a count"))
    };
    let metrics = || server.metrics_text();
    let body = r#"{"context": {"targetingKey": "u-1"}}"#;
    for _ in 0..3 {
        let (status, _, text) = post(
            &server,
            "/ofrep/v1/evaluate/flags/t-bool",
            Some(&keys.client),
            body,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    // A missing flag is not counted.
    post(
        &server,
        "/ofrep/v1/evaluate/flags/nope",
        Some(&keys.client),
        body,
    )
    .await;
    let text = metrics().await;
    assert!(
        text.contains("# TYPE switchyard_flag_evaluations counter"),
        "{text}"
    );
    assert_eq!(count(&text, "t-bool"), 3, "{text}");
    assert_eq!(count(&text, "t-string"), 0, "{text}");
    assert!(!text.contains("flag=\"nope\""), "{text}");

    // A change compiles a new snapshot; counting goes on from 3.
    server
        .store
        .create_flag(
            ACTOR,
            "demo",
            serde_json::from_value(json!({"key": "t-new", "name": "new", "type": "boolean",
                "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                "environments": {"production": {"enabled": true, "off_variation": "off",
                    "fallthrough": {"variation": "on"}}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    server
        .state
        .snapshots
        .reload_project("demo", None)
        .await
        .unwrap();
    let (status, _, text) = post(
        &server,
        "/ofrep/v1/evaluate/flags",
        Some(&keys.client),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let text = metrics().await;
    assert_eq!(count(&text, "t-bool"), 4, "{text}");
    assert_eq!(count(&text, "t-string"), 1, "{text}");
    assert_eq!(count(&text, "t-new"), 1, "{text}");
    server.stop().await;
}

/// Bodies that arrive in several chunks (no Content-Length) are read
/// whole; over the limit they are refused with 413 while streaming; a
/// context with more attributes than the cap is a 400 INVALID_CONTEXT.
#[tokio::test]
async fn chunked_bodies_are_read_whole_and_limited() {
    let config = ServerConfig {
        body_limit: 4096,
        ..ServerConfig::default()
    };
    let server = start_with(Backend::Sqlite, config).await;
    let keys = setup(&server).await;
    let send_chunks = |chunks: Vec<String>| {
        let url = format!("{}/ofrep/v1/evaluate/flags/t-string", server.url);
        let key = keys.client.clone();
        async move {
            let stream = futures_util::stream::iter(
                chunks
                    .into_iter()
                    .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
            );
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.text().await.unwrap())
        }
    };
    // The same context as one chunk and as three: the same answer.
    let whole = r#"{"context": {"targetingKey": "u", "email": "ann@example.com"}}"#;
    let (status, one) = send_chunks(vec![whole.to_string()]).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    let (a, rest) = whole.split_at(10);
    let (b, c) = rest.split_at(25);
    let (status, three) = send_chunks(vec![a.into(), b.into(), c.into()]).await;
    assert_eq!(status, StatusCode::OK, "{three}");
    assert_eq!(one, three);
    assert_eq!(
        serde_json::from_str::<Value>(&one).unwrap()["variant"],
        "one-page"
    );

    // Over the limit in chunks of 1 KiB, with no length announced.
    let (status, text) = send_chunks(vec!["x".repeat(1024); 8]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    let body: Value = serde_json::from_str(&text).expect("JSON error body");
    assert_eq!(body["errorCode"], "PARSE_ERROR");

    // Too many attributes (under the byte limit) is an invalid context.
    let server_big = start(Backend::Sqlite).await;
    let keys_big = setup(&server_big).await;
    let attrs: serde_json::Map<String, Value> = (0..=switchyard_core::MAX_ATTRIBUTES)
        .map(|i| (format!("a{i}"), json!(i)))
        .collect();
    let body = json!({"context": attrs}).to_string();
    for path in [
        "/ofrep/v1/evaluate/flags/t-string",
        "/ofrep/v1/evaluate/flags",
    ] {
        let (status, _, text) = post(&server_big, path, Some(&keys_big.client), &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["errorCode"], "INVALID_CONTEXT", "{path}: {text}");
    }
    server_big.stop().await;
    server.stop().await;
}

/// JSON is UTF-8: a body that is not is a 400 PARSE_ERROR, for one flag
/// and for all.
#[tokio::test]
async fn a_body_that_is_not_utf8_is_a_parse_error() {
    let server = start(Backend::Sqlite).await;
    let keys = setup(&server).await;
    let body: &[u8] = b"{\"context\": {\"targetingKey\": \"u\xff\"}}";
    for path in [
        "/ofrep/v1/evaluate/flags/t-bool",
        "/ofrep/v1/evaluate/flags",
    ] {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", server.url))
            .bearer_auth(&keys.client)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["errorCode"], "PARSE_ERROR", "{path}: {v}");
        assert!(
            v["errorDetails"].as_str().unwrap().contains("UTF-8"),
            "{path}: {v}"
        );
    }
    server.stop().await;
}

/// The flag key is percent-decoded from the path; a key that is not UTF-8
/// once decoded is a 400, never a 5xx.
#[tokio::test]
async fn a_percent_encoded_flag_key_is_decoded() {
    let server = start(Backend::Sqlite).await;
    let keys = setup(&server).await;
    let body = r#"{"context": {"targetingKey": "u"}}"#;
    let (status, _, plain) = post(
        &server,
        "/ofrep/v1/evaluate/flags/t-bool",
        Some(&keys.client),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{plain}");
    let (status, _, encoded) = post(
        &server,
        "/ofrep/v1/evaluate/flags/t%2Dbool",
        Some(&keys.client),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{encoded}");
    assert_eq!(plain, encoded);
    let (status, _, text) = post(
        &server,
        "/ofrep/v1/evaluate/flags/t%FFbool",
        Some(&keys.client),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["errorCode"], "GENERAL", "{text}");
    server.stop().await;
}
