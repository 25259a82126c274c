//! What an exposure logged by the server (from an OFREP evaluation) says
//! about its unit: the evaluation context's scalar attributes, so results
//! can be broken down by one of them (docs/results.md, "Breakdown").
//!
//! Bounded, as every logged exposure waits in a queue: at most
//! [`MAX_ATTRIBUTES`] attributes (by name order), names and string values
//! of at most [`MAX_TEXT`] bytes (longer ones are left out, not cut), and
//! [`MAX_BYTES`] of JSON in all. The targeting key is the unit already and
//! is not repeated; objects, arrays and nulls are left out.

use serde_json::{Map, Value};
use switchyard_core::Context;

pub const MAX_ATTRIBUTES: usize = 16;
pub const MAX_TEXT: usize = 64;
pub const MAX_BYTES: usize = 1024;

/// The context's attributes as a JSON object, or `None` when none fits.
pub fn of(context: &Context) -> Option<String> {
    let mut out = Map::new();
    let mut bytes = 2;
    for (name, value) in context.attributes() {
        if out.len() >= MAX_ATTRIBUTES {
            break;
        }
        if name == "targetingKey" || name.len() > MAX_TEXT {
            continue;
        }
        let fits = match value {
            Value::String(s) => s.len() <= MAX_TEXT,
            Value::Number(_) | Value::Bool(_) => true,
            _ => false,
        };
        if !fits {
            continue;
        }
        // "name":value, and a comma.
        let size = name.len() + 4 + value.to_string().len();
        if bytes + size > MAX_BYTES {
            continue;
        }
        bytes += size;
        out.insert(name.to_string(), value.clone());
    }
    (!out.is_empty()).then(|| Value::Object(out).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(v: serde_json::Value) -> Context {
        Context::from_value(v).unwrap()
    }

    #[test]
    fn scalar_attributes_are_kept_and_everything_is_bounded() {
        let c = context(serde_json::json!({
            "targetingKey": "u1", "country": "DE", "age": 31, "beta": true,
            "tags": ["a"], "profile": {"x": 1}, "none": null, "long": "x".repeat(65)
        }));
        let v: Value = serde_json::from_str(&of(&c).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"country": "DE", "age": 31, "beta": true})
        );
        let mut many = serde_json::Map::new();
        for i in 0..100 {
            many.insert(format!("a{i:03}"), Value::from("y".repeat(60)));
        }
        let text = of(&context(Value::Object(many))).unwrap();
        assert!(text.len() <= MAX_BYTES, "{}", text.len());
        let v: Map<String, Value> = serde_json::from_str(&text).unwrap();
        assert!(v.len() <= MAX_ATTRIBUTES && !v.is_empty());
        assert_eq!(of(&context(serde_json::json!({"targetingKey": "u"}))), None);
    }
}
