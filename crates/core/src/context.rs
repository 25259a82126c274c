//! The evaluation context: a targeting key plus attributes.

use std::borrow::Cow;
use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::condition::bytes_eq;
use crate::model::TARGETING_KEY;

/// Attributes of the unit being evaluated. The targeting key is stored as
/// the attribute `targetingKey`, so conditions and `bucket_by` name it like
/// any other attribute.
///
/// Evaluation looks attributes up many times per flag, so each attribute
/// keeps the (FxHash) hash of its name, and a compiled configuration hashes
/// the names it looks up once ([`AttributeName`]): a lookup compares
/// hashes, then the name once. A context of up to [`SCANNED`] attributes
/// (the usual size) is scanned, which for so few beats probing a hash
/// table; a larger one is indexed by a hash table.
#[derive(Clone, Default)]
pub struct Context {
    /// The hash of each attribute's name, beside `entries` so that a scan
    /// reads only these.
    hashes: Vec<u64>,
    /// Names and values, in the order first set.
    entries: Vec<(String, Value)>,
    /// Positions in `entries` by name hash; empty (and not allocated)
    /// until there are more than [`SCANNED`] entries.
    index: HashTable<u32>,
}

/// Contexts of up to this many attributes are scanned, not indexed.
const SCANNED: usize = 16;

/// An attribute name with its hash, computed when a configuration is
/// compiled.
#[derive(Debug, Clone)]
pub(crate) struct AttributeName {
    name: String,
    hash: u64,
}

impl AttributeName {
    pub(crate) fn new(name: &str) -> Self {
        AttributeName {
            name: name.to_string(),
            hash: hash_name(name),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.name
    }
}

/// The hash attribute names and flag keys are looked up by.
#[inline]
pub(crate) fn hash_name(name: &str) -> u64 {
    FxBuildHasher.hash_one(name)
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

/// Equal when both hold the same attributes with equal values (in any
/// order).
impl PartialEq for Context {
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .all(|(k, v)| other.attributes_get(k) == Some(v))
    }
}

/// A JSON object of the attributes, in the order first set.
impl Serialize for Context {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Contexts are small: room for this many attributes is reserved up front,
/// so parsing a typical one never rehashes.
const TYPICAL_ATTRIBUTES: usize = 8;

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Attributes;
        impl<'de> serde::de::Visitor<'de> for Attributes {
            type Value = Context;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of attributes")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Context, A::Error> {
                let capacity = map.size_hint().unwrap_or(0).clamp(TYPICAL_ATTRIBUTES, 64);
                let mut context = Context {
                    hashes: Vec::with_capacity(capacity),
                    entries: Vec::with_capacity(capacity),
                    index: HashTable::new(),
                };
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    context.insert(k, v);
                    if context.entries.len() > MAX_ATTRIBUTES {
                        return Err(serde::de::Error::custom(ContextError::TooManyAttributes));
                    }
                }
                Ok(context)
            }
        }
        d.deserialize_map(Attributes)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    #[error("context must be a JSON object")]
    NotAnObject,
    #[error("targetingKey must be a string")]
    TargetingKeyNotString,
    #[error("a context holds at most {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
}

/// The most attributes a context may hold. Real contexts hold tens; the
/// cap bounds the work a hostile request can cause in the attribute map
/// (whose hasher is fast, not collision-resistant).
pub const MAX_ATTRIBUTES: usize = 1000;

impl Context {
    /// An empty context (no targeting key).
    pub fn new() -> Self {
        Context::default()
    }

    /// An empty context with room for `attributes` attributes, for callers
    /// that build one attribute at a time (an SDK converting another
    /// library's context): no reallocation as it fills.
    pub fn with_capacity(attributes: usize) -> Self {
        let n = attributes.min(MAX_ATTRIBUTES);
        Context {
            hashes: Vec::with_capacity(n),
            entries: Vec::with_capacity(n),
            ..Context::default()
        }
    }

    /// A context with only a targeting key.
    pub fn with_key(targeting_key: impl Into<String>) -> Self {
        let mut c = Context::new();
        c.set(TARGETING_KEY, Value::String(targeting_key.into()));
        c
    }

    /// Builds a context from a JSON object such as OFREP's `context`.
    pub fn from_value(value: Value) -> Result<Self, ContextError> {
        match value {
            Value::Object(attributes) => Self::from_map(attributes),
            _ => Err(ContextError::NotAnObject),
        }
    }

    pub fn from_map(attributes: Map<String, Value>) -> Result<Self, ContextError> {
        if attributes.len() > MAX_ATTRIBUTES {
            return Err(ContextError::TooManyAttributes);
        }
        match attributes.get(TARGETING_KEY) {
            None | Some(Value::Null) | Some(Value::String(_)) => {
                let mut context = Context {
                    hashes: Vec::with_capacity(attributes.len()),
                    entries: Vec::with_capacity(attributes.len()),
                    index: HashTable::new(),
                };
                for (k, v) in attributes {
                    context.insert(k, v);
                }
                Ok(context)
            }
            Some(_) => Err(ContextError::TargetingKeyNotString),
        }
    }

    /// Checks a context built by deserialising it directly (the fast path):
    /// the same rule as [`Context::from_map`].
    pub fn checked(self) -> Result<Self, ContextError> {
        match self.attributes_get(TARGETING_KEY) {
            None | Some(Value::Null) | Some(Value::String(_)) => Ok(self),
            Some(_) => Err(ContextError::TargetingKeyNotString),
        }
    }

    /// Sets an attribute, returning `self` for chaining.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<Value>) -> &mut Self {
        self.insert(name.into(), value.into());
        self
    }

    /// Sets an attribute; a name set before keeps its last value.
    fn insert(&mut self, name: String, value: Value) {
        let hash = hash_name(&name);
        if let Some(i) = self.position(hash, &name) {
            self.entries[i].1 = value;
            return;
        }
        self.hashes.push(hash);
        self.entries.push((name, value));
        let hashes = &self.hashes;
        let rehash = |&i: &u32| hashes[i as usize];
        if hashes.len() == SCANNED + 1 {
            self.index.reserve(hashes.len(), rehash);
            for (i, &h) in hashes.iter().enumerate() {
                self.index.insert_unique(h, i as u32, rehash);
            }
        } else if hashes.len() > SCANNED + 1 {
            self.index
                .insert_unique(hash, (hashes.len() - 1) as u32, rehash);
        }
    }

    /// Where the attribute `name`, whose hash is `hash`, is in `entries`.
    #[inline(always)]
    fn position(&self, hash: u64, name: &str) -> Option<usize> {
        if self.hashes.len() > SCANNED {
            return self
                .index
                .find(hash, |&i| {
                    self.hashes[i as usize] == hash
                        && self
                            .entries
                            .get(i as usize)
                            .is_some_and(|(k, _)| bytes_eq(k, name.as_bytes()))
                })
                .map(|&i| i as usize);
        }
        // The name is compared only where the hash matches.
        self.hashes
            .iter()
            .zip(&self.entries)
            .position(|(&h, (k, _))| h == hash && bytes_eq(k, name.as_bytes()))
    }

    /// The attribute's value, `null` included.
    #[inline]
    fn attributes_get(&self, name: &str) -> Option<&Value> {
        self.position(hash_name(name), name)
            .map(|i| &self.entries[i].1)
    }

    /// The attribute's value; `null` counts as absent.
    #[inline]
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self.attributes_get(name) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// [`Context::get`] with the name hashed beforehand.
    #[inline(always)]
    pub(crate) fn get_named(&self, name: &AttributeName) -> Option<&Value> {
        match self
            .position(name.hash, &name.name)
            .map(|i| &self.entries[i].1)
        {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// [`Context::unit`] with the name hashed beforehand.
    #[inline]
    pub(crate) fn unit_named(&self, name: &AttributeName) -> Option<Cow<'_, str>> {
        self.get_named(name).and_then(unit_text)
    }

    /// The bucketing unit named by `attribute`: a string as it is, a number
    /// or boolean as its JSON text; `None` for anything else or absent.
    #[inline]
    pub fn unit(&self, attribute: &str) -> Option<Cow<'_, str>> {
        self.get(attribute).and_then(unit_text)
    }

    pub fn targeting_key(&self) -> Option<&str> {
        self.get(TARGETING_KEY).and_then(Value::as_str)
    }

    /// Every attribute, sorted by name (a stable order for hashing).
    pub fn attributes(&self) -> Vec<(&str, &Value)> {
        let mut all: Vec<(&str, &Value)> =
            self.entries.iter().map(|(k, v)| (k.as_str(), v)).collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all
    }
}

#[inline]
pub(crate) fn unit_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_non_string_targeting_key_is_rejected() {
        assert_eq!(
            Context::from_value(json!({"targetingKey": 5})),
            Err(ContextError::TargetingKeyNotString)
        );
        assert_eq!(
            Context::from_value(json!([1])),
            Err(ContextError::NotAnObject)
        );
    }

    #[test]
    fn a_context_built_with_room_reads_like_any_other() {
        for n in [0, 3, 20] {
            let mut c = Context::with_capacity(n);
            let mut plain = Context::new();
            for i in 0..20 {
                c.set(format!("a{i}"), i);
                plain.set(format!("a{i}"), i);
            }
            c.set("a3", "last");
            plain.set("a3", "last");
            assert_eq!(c, plain, "capacity {n}");
            assert_eq!(c.get("a19"), Some(&json!(19)));
            assert_eq!(c.get("a3"), Some(&json!("last")));
        }
    }

    #[test]
    fn every_attribute_is_found_and_the_last_duplicate_wins() {
        for n in [0, 1, 7, 8, 9, 16, 17, 18, 200] {
            let mut text = String::from("{");
            for i in 0..n {
                text.push_str(&format!("\"a{i}\": {i}, "));
            }
            // A duplicate name: JSON readers keep the last value.
            text.push_str("\"a0\": \"last\"}");
            let c: Context = serde_json::from_str(&text).unwrap();
            assert_eq!(c.attributes().len(), n.max(1), "{n} attributes");
            assert_eq!(c.get("a0"), Some(&json!("last")), "{n} attributes");
            for i in 1..n {
                assert_eq!(c.get(&format!("a{i}")), Some(&json!(i)), "{n}: a{i}");
            }
            assert_eq!(c.get("missing"), None);
        }
    }

    #[test]
    fn a_context_over_the_attribute_cap_is_refused_both_ways() {
        let many = |n: usize| {
            let m: Map<String, Value> = (0..n).map(|i| (format!("a{i}"), json!(i))).collect();
            Value::Object(m)
        };
        assert!(Context::from_value(many(MAX_ATTRIBUTES)).is_ok());
        assert_eq!(
            Context::from_value(many(MAX_ATTRIBUTES + 1)),
            Err(ContextError::TooManyAttributes)
        );
        assert!(serde_json::from_value::<Context>(many(MAX_ATTRIBUTES)).is_ok());
        let err = serde_json::from_value::<Context>(many(MAX_ATTRIBUTES + 1)).unwrap_err();
        assert!(err.to_string().contains("at most 1000 attributes"), "{err}");
    }

    #[test]
    fn null_attributes_count_as_absent() {
        let c = Context::from_value(json!({"targetingKey": "u", "plan": null})).unwrap();
        assert_eq!(c.get("plan"), None);
        assert_eq!(c.targeting_key(), Some("u"));
    }
}
