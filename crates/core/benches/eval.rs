//! Evaluation hot paths: one flag with five rules (the SDK's target is
//! under 100 ns median through its public API, which adds a snapshot load
//! and a typed conversion, so the engine's budget is about 80 ns), and
//! every flag of a 200-flag configuration.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchyard_core::{ConfigDocument, Context, compile};

/// A flag whose five rules use common operators; the context matches none
/// of the first four, so evaluation tries every rule before the split.
fn five_rule_flag(key: &str) -> Value {
    json!({
        "key": key, "type": "string",
        "variations": [{"key": "a", "value": "A"}, {"key": "b", "value": "B"}, {"key": "c", "value": "C"}],
        "enabled": true, "off_variation": "a",
        "rules": [
            {"conditions": [{"attribute": "email", "op": "ends_with", "value": "@example.com"}], "serve": {"variation": "b"}},
            {"conditions": [{"attribute": "country", "op": "in", "value": ["DE", "FR", "NL", "SE", "NO"]}], "serve": {"variation": "c"}},
            {"conditions": [{"attribute": "age", "op": "gte", "value": 65}], "serve": {"variation": "b"}},
            {"conditions": [{"attribute": "app_version", "op": "semver_lt", "value": "2.0.0"}], "serve": {"variation": "a"}},
            {"conditions": [{"attribute": "plan", "op": "equals", "value": "pro"}],
             "serve": {"split": {"weights": [{"variation": "b", "weight": 5000}, {"variation": "c", "weight": 5000}]}}}
        ],
        "fallthrough": {"variation": "a"}
    })
}

fn context() -> Context {
    Context::from_value(json!({
        "targetingKey": "user-48213",
        "email": "someone@customer.org",
        "country": "US",
        "age": 34,
        "app_version": "2.4.1",
        "plan": "pro"
    }))
    .expect("object")
}

fn bench(c: &mut Criterion) {
    let doc: ConfigDocument =
        serde_json::from_value(json!({"flags": [five_rule_flag("checkout")]})).expect("doc");
    let evaluator = compile(&doc).expect("compiles");
    let ctx = context();
    // The context misses the first four rules and lands in the fifth rule's split.
    assert_eq!(evaluator.evaluate("checkout", &ctx).rule, Some(4));
    c.bench_function("evaluate/one_flag_5_rules", |b| {
        b.iter(|| black_box(evaluator.evaluate(black_box("checkout"), black_box(&ctx))))
    });

    let flags: Vec<Value> = (0..200)
        .map(|i| five_rule_flag(&format!("flag-{i}")))
        .collect();
    let doc: ConfigDocument = serde_json::from_value(json!({"flags": flags})).expect("doc");
    let evaluator = compile(&doc).expect("compiles");
    c.bench_function("evaluate_all/200_flags", |b| {
        b.iter(|| black_box(evaluator.evaluate_all(black_box(&ctx))))
    });
}

/// Reading a context from JSON, as the OFREP endpoints do per request: from
/// bytes (serde_json checks each string is UTF-8), and from text checked
/// once beforehand (what the server does).
fn parse(c: &mut Criterion) {
    let text = br#"{"targetingKey": "user-48213", "email": "someone@customer.org", "country": "US", "age": 34, "app_version": "2.4.1", "plan": "pro"}"#;
    assert_eq!(
        serde_json::from_slice::<Context>(text).expect("parses"),
        context()
    );
    c.bench_function("context/parse_6_attributes", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Context>(black_box(text)).expect("parses")))
    });
    c.bench_function("context/parse_6_attributes_str", |b| {
        b.iter(|| {
            let t = std::str::from_utf8(black_box(text)).expect("utf-8");
            black_box(serde_json::from_str::<Context>(t).expect("parses"))
        })
    });
}

criterion_group!(benches, bench, parse);
criterion_main!(benches);
