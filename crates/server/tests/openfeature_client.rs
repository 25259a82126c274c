//! OpenFeature's own Rust SDK (`open-feature`) with the official OFREP
//! provider (`open-feature-ofrep`) evaluates flags against the server.
//!
//! This provider reports every successful reason as STATIC and drops error
//! codes beyond its own mapping and all metadata, so reasons are checked
//! here only as far as the provider passes them on; `ofrep_protocol.rs`
//! checks the wire format itself.

mod common;

use std::collections::HashMap;

use common::{BACKENDS, TestServer, start};
use open_feature::{
    EvaluationContext, EvaluationErrorCode, EvaluationReason, OpenFeature, StructValue, Value,
};
use open_feature_ofrep::{OfrepOptions, OfrepProvider};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::json;
use switchyard_store::{ApiKeyInput, ApiKeyKind, FlagInput};

const ACTOR: &str = "test";

async fn create_flags(server: &TestServer) {
    let on_off = json!([{"key": "on", "value": true}, {"key": "off", "value": false}]);
    let flags = [
        json!({"key": "of-bool", "name": "bool", "type": "boolean", "variations": on_off,
               "environments": {"production": {"enabled": true, "off_variation": "off",
                                               "fallthrough": {"variation": "on"}}}}),
        json!({"key": "of-string", "name": "string", "type": "string",
               "variations": [{"key": "classic", "value": "classic"},
                              {"key": "one-page", "value": "one-page"}],
               "environments": {"production": {"enabled": true, "off_variation": "classic",
                   "rules": [{"conditions": [
                       {"attribute": "country", "op": "in", "value": ["DE", "FR"]}],
                       "serve": {"variation": "one-page"}}],
                   "fallthrough": {"variation": "classic"}}}}),
        json!({"key": "of-int", "name": "int", "type": "number",
               "variations": [{"key": "small", "value": 10}, {"key": "large", "value": 50}],
               "environments": {"production": {"enabled": true, "off_variation": "small",
                   "rules": [{"conditions": [
                       {"attribute": "age", "op": "gte", "value": 18}],
                       "serve": {"variation": "large"}}],
                   "fallthrough": {"variation": "small"}}}}),
        json!({"key": "of-float", "name": "float", "type": "number",
               "variations": [{"key": "half", "value": 0.5}],
               "environments": {"production": {"enabled": true, "off_variation": "half",
                                               "fallthrough": {"variation": "half"}}}}),
        json!({"key": "of-object", "name": "object", "type": "json",
               "variations": [{"key": "blue", "value": {"color": "blue", "size": 3}}],
               "environments": {"production": {"enabled": true, "off_variation": "blue",
                                               "fallthrough": {"variation": "blue"}}}}),
        json!({"key": "of-split", "name": "split", "type": "boolean", "variations": on_off,
               "environments": {"production": {"enabled": true, "off_variation": "off",
                   "fallthrough": {"split": {"weights": [
                       {"variation": "on", "weight": 3000}, {"variation": "off", "weight": 7000}]}}}}}),
        json!({"key": "of-disabled", "name": "disabled", "type": "boolean", "variations": on_off,
               "environments": {"production": {"enabled": false, "off_variation": "off",
                                               "fallthrough": {"variation": "on"}}}}),
    ];
    for flag in flags {
        let input: FlagInput = serde_json::from_value(flag).expect("flag input");
        server
            .store
            .create_flag(ACTOR, "demo", input)
            .await
            .expect("create flag");
    }
    server
        .state
        .snapshots
        .reload_project("demo", None)
        .await
        .expect("reload");
}

async fn client_for(server: &TestServer, name: &str) -> open_feature::Client {
    let key = server
        .store
        .create_api_key(
            ACTOR,
            ApiKeyInput {
                name: "openfeature".into(),
                kind: ApiKeyKind::Client,
                project: Some("demo".into()),
                environment: Some("production".into()),
            },
        )
        .await
        .expect("client key");
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {}", key.secret)).expect("header"),
    );
    let provider = OfrepProvider::new(OfrepOptions {
        base_url: server.url.clone(),
        headers,
        ..Default::default()
    })
    .await
    .expect("provider");
    let mut api = OpenFeature::singleton_mut().await;
    api.set_named_provider(name, provider).await;
    api.create_named_client(name)
}

#[tokio::test]
async fn the_openfeature_sdk_with_the_ofrep_provider_evaluates_every_flag_type() {
    for backend in BACKENDS {
        let server = start(backend).await;
        create_flags(&server).await;
        let client = client_for(&server, &format!("switchyard-{backend:?}")).await;
        let user = EvaluationContext::default().with_targeting_key("user-1");

        let b = client
            .get_bool_details("of-bool", Some(&user), None)
            .await
            .expect("bool");
        assert!(b.value, "{backend:?}");
        assert_eq!(b.variant.as_deref(), Some("on"));
        assert_eq!(b.reason, Some(EvaluationReason::Static));

        // Targeting match on a string flag, and the fallthrough for others.
        let german = user.clone().with_custom_field("country", "DE");
        let s = client
            .get_string_details("of-string", Some(&german), None)
            .await
            .expect("string");
        assert_eq!(s.value, "one-page");
        assert_eq!(s.variant.as_deref(), Some("one-page"));
        let s = client
            .get_string_details("of-string", Some(&user), None)
            .await
            .expect("string");
        assert_eq!(s.value, "classic");
        assert_eq!(s.variant.as_deref(), Some("classic"));

        // Numbers: an integer flag with a numeric rule, and a float flag.
        let adult = user.clone().with_custom_field("age", 30_i64);
        let i = client
            .get_int_details("of-int", Some(&adult), None)
            .await
            .expect("int");
        assert_eq!((i.value, i.variant.as_deref()), (50, Some("large")));
        let i = client
            .get_int_value("of-int", Some(&user), None)
            .await
            .expect("int");
        assert_eq!(i, 10);
        let f = client
            .get_float_value("of-float", Some(&user), None)
            .await
            .expect("float");
        assert_eq!(f, 0.5);

        // An object flag.
        let o = client
            .get_struct_details::<StructValue>("of-object", Some(&user), None)
            .await
            .expect("object");
        let expected: HashMap<String, Value> = [
            ("color".to_string(), Value::String("blue".into())),
            ("size".to_string(), Value::Int(3)),
        ]
        .into_iter()
        .collect();
        assert_eq!(o.value.fields, expected);
        assert_eq!(o.variant.as_deref(), Some("blue"));

        // A split: what the frozen bucketing function says, for each unit.
        for n in 0..20 {
            let unit = format!("unit-{n}");
            let ctx = EvaluationContext::default().with_targeting_key(unit.clone());
            let got = client
                .get_bool_details("of-split", Some(&ctx), None)
                .await
                .expect("split");
            let on = switchyard_core::bucket::bucket("of-split", &unit) < 3000;
            assert_eq!(got.value, on, "{unit}");
            assert_eq!(got.variant.as_deref(), Some(if on { "on" } else { "off" }));
        }

        // A disabled flag serves its off variation.
        let d = client
            .get_bool_details("of-disabled", Some(&user), None)
            .await
            .expect("disabled");
        assert!(!d.value);
        assert_eq!(d.variant.as_deref(), Some("off"));

        // A missing flag is FLAG_NOT_FOUND, and the caller's default applies.
        let err = client
            .get_bool_details("no-such-flag", Some(&user), None)
            .await
            .expect_err("missing flag");
        assert_eq!(err.code, EvaluationErrorCode::FlagNotFound);
        assert!(
            client
                .get_bool_value("no-such-flag", Some(&user), None)
                .await
                .unwrap_or(true)
        );

        // A split without a targeting key cannot bucket: an error, not a value.
        let anonymous = EvaluationContext::default().with_custom_field("country", "DE");
        let err = client
            .get_bool_details("of-split", Some(&anonymous), None)
            .await
            .expect_err("no targeting key");
        assert_eq!(err.code, EvaluationErrorCode::InvalidContext);

        // A type the flag does not have is a type mismatch, not a wrong value.
        let err = client
            .get_int_details("of-string", Some(&user), None)
            .await
            .expect_err("string flag read as int");
        assert_eq!(err.code, EvaluationErrorCode::ParseError);
        server.stop().await;
    }
}
