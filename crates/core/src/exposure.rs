//! What every exposure logger needs, the server's (OFREP) and the SDK's
//! alike, so both log the same exposures:
//!
//! - [`attributes_of`]: what an exposure says about its unit, the
//!   evaluation context's scalar attributes, so results can be broken down
//!   by one of them (docs/results.md, "Breakdown");
//! - [`key`] and [`TimeWindow`]: deduplication per (environment, unit,
//!   experiment, phase, variation) within a time window.
//!
//! The attributes are bounded, as every logged exposure waits in a queue: at most
//! [`MAX_ATTRIBUTES`] attributes (by name order), names and string values
//! of at most [`MAX_TEXT`] bytes (longer ones are left out, not cut), and
//! [`MAX_BYTES`] of JSON in all. The targeting key is the unit already and
//! is not repeated; objects, arrays and nulls are left out.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::Context;

pub const MAX_ATTRIBUTES: usize = 16;
pub const MAX_TEXT: usize = 64;
pub const MAX_BYTES: usize = 1024;

/// The context's attributes as a JSON object, or `None` when none fits.
pub fn attributes_of(context: &Context) -> Option<String> {
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

/// The key an exposure is deduplicated by: the same unit served the same
/// variation of the same experiment phase in the same environment.
pub fn key(
    project: &str,
    environment: &str,
    unit: &str,
    experiment: &str,
    phase: u32,
    variation: &str,
) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (project, environment, unit, experiment, phase, variation).hash(&mut h);
    h.finish()
}

/// A hasher for keys that are hashes already: uses them as they are.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A set of 64-bit hashes.
pub type HashedSet = HashSet<u64, BuildHasherDefault<IdentityHasher>>;

/// Remembers keys for at least `window` (and at most twice that), in two
/// generations; a generation also turns over when it holds `capacity / 2`
/// keys, which bounds memory (about 20 bytes a key) and may shorten the
/// window under heavy load. The caller supplies the time.
#[derive(Debug)]
pub struct TimeWindow {
    current: HashedSet,
    previous: HashedSet,
    turned: Instant,
    window: Duration,
    capacity: usize,
}

impl TimeWindow {
    pub fn new(window: Duration, capacity: usize, now: Instant) -> Self {
        TimeWindow {
            current: HashedSet::default(),
            previous: HashedSet::default(),
            turned: now,
            window,
            capacity: capacity.max(2),
        }
    }

    /// `true` if `key` was not seen within the window (and now is).
    pub fn insert(&mut self, key: u64, now: Instant) -> bool {
        if now.saturating_duration_since(self.turned) >= self.window
            || self.current.len() >= self.capacity / 2
        {
            self.previous = std::mem::take(&mut self.current);
            self.turned = now;
        }
        if self.previous.contains(&key) {
            return false;
        }
        self.current.insert(key)
    }
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
        let v: Value = serde_json::from_str(&attributes_of(&c).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"country": "DE", "age": 31, "beta": true})
        );
        let mut many = serde_json::Map::new();
        for i in 0..100 {
            many.insert(format!("a{i:03}"), Value::from("y".repeat(60)));
        }
        let text = attributes_of(&context(Value::Object(many))).unwrap();
        assert!(text.len() <= MAX_BYTES, "{}", text.len());
        let v: Map<String, Value> = serde_json::from_str(&text).unwrap();
        assert!(v.len() <= MAX_ATTRIBUTES && !v.is_empty());
        assert_eq!(
            attributes_of(&context(serde_json::json!({"targetingKey": "u"}))),
            None
        );
    }

    #[test]
    fn a_time_window_remembers_a_key_for_at_least_its_window() {
        let t0 = Instant::now();
        let win = Duration::from_secs(10);
        let mut w = TimeWindow::new(win, 1000, t0);
        assert!(w.insert(7, t0));
        assert!(!w.insert(7, t0 + Duration::from_secs(9)));
        assert!(!w.insert(7, t0 + Duration::from_secs(11)));
        assert!(w.insert(7, t0 + Duration::from_secs(21)));
    }

    #[test]
    fn a_new_phase_or_variation_is_a_new_key() {
        let k = key("p", "e", "u", "x", 1, "a");
        assert_eq!(k, key("p", "e", "u", "x", 1, "a"));
        assert_ne!(k, key("p", "e", "u", "x", 2, "a"));
        assert_ne!(k, key("p", "e", "u", "x", 1, "b"));
        assert_ne!(k, key("p", "prod", "u", "x", 1, "a"));
    }
}
