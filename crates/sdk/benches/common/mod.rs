//! The flag and context both SDK benches read (the ones of
//! `switchyard-core`'s `eval` bench, so the figures read side by side).

use serde_json::{Value, json};

/// Five rules with common operators; the context of [`attributes`]
/// misses the first four and lands in the fifth rule's split.
pub fn five_rule_flag(key: &str, flag_type: &str, values: [Value; 3]) -> Value {
    let [a, b, c] = values;
    json!({
        "key": key, "type": flag_type,
        "variations": [{"key": "a", "value": a}, {"key": "b", "value": b}, {"key": "c", "value": c}],
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

pub fn attributes() -> Value {
    json!({
        "targetingKey": "user-48213",
        "email": "someone@customer.org",
        "country": "US",
        "age": 34,
        "app_version": "2.4.1",
        "plan": "pro"
    })
}
