//! The event schema: parsing a batch in one pass, borrowing from the body,
//! and validating each event on its own.
//!
//! An event is a JSON object:
//!
//! ```json
//! {"type": "exposure", "id": "e-1", "unit": "user-7", "experiment": "checkout",
//!  "flag": "checkout-flow", "variation": "b", "time": 1767225600000}
//! {"type": "track", "id": "e-2", "unit": "user-7", "name": "purchase",
//!  "value": 12.5, "time": "2026-01-01T00:00:00Z", "attributes": {"plan": "pro"}}
//! ```
//!
//! `id` is optional (a repeated id is stored once), `time` is optional
//! (milliseconds since the Unix epoch or an RFC 3339 string; the server's
//! clock when absent). An exposure names an `experiment`, a `flag` or both.
//! Unknown fields are ignored.
//!
//! Speed: each known field is captured as a borrowed [`RawValue`] (one
//! scan, no allocation), then decoded by hand: a string without escapes is
//! a slice of the body. Type errors therefore never abort the batch: they
//! reject one event, which keeps its recognised fields as raw JSON for the
//! dead-letter store.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Limits applied while parsing and validating.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most events in one batch.
    pub max_events: usize,
    /// Largest event (sum of its recognised fields' JSON text), in bytes.
    pub max_event_bytes: usize,
    /// Largest body after gzip decompression, in bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_events: 10_000,
            max_event_bytes: 32 * 1024,
            max_body_bytes: 16 << 20,
        }
    }
}

pub const MAX_ID: usize = 128;
pub const MAX_KEY: usize = 256;
pub const MAX_UNIT: usize = 1024;
/// Events may not be dated more than this far after the server's clock.
pub const MAX_FUTURE_MS: i64 = 24 * 3600 * 1000;
/// 2000-01-01T00:00:00Z: older times are surely wrong.
pub const MIN_TIME_MS: i64 = 946_684_800_000;
/// Deepest nesting of arrays and objects in `attributes` (the object itself
/// is depth 1). Whoever reads stored events (the aggregator, export
/// clients, serde_json's own 128-level limit) can then parse them.
pub const MAX_ATTRIBUTE_DEPTH: usize = 32;

/// A validated event, borrowing from the request body where it can.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRef<'a> {
    pub id: Option<Cow<'a, str>>,
    pub unit: Cow<'a, str>,
    pub time_ms: i64,
    pub kind: KindRef<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum KindRef<'a> {
    Exposure {
        experiment: Option<Cow<'a, str>>,
        flag: Option<Cow<'a, str>>,
        variation: Cow<'a, str>,
        /// The JSON object text, as sent: the unit's attributes when it was
        /// exposed (what results can be broken down by).
        attributes: Option<&'a str>,
    },
    Track {
        name: Cow<'a, str>,
        value: Option<f64>,
        /// The JSON object text, as sent.
        attributes: Option<&'a str>,
    },
}

/// Why one event was rejected. `code` is stable; `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Rejection {
    fn new(code: &str, field: Option<&str>, message: impl Into<String>) -> Self {
        Rejection {
            code: code.to_string(),
            message: message.into(),
            field: field.map(str::to_string),
        }
    }
}

/// A batch that could not be read at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// JSON, but not a batch: neither an array of events nor `{"events": [...]}`.
    #[error("not a batch of events: {0}")]
    NotABatch(String),
    #[error("a batch holds at most {max} events")]
    TooManyEvents { max: usize },
    #[error("the body is not UTF-8")]
    NotUtf8,
}

/// The recognised fields of one element, each as raw JSON.
#[derive(Debug, Default, Clone)]
pub struct RawEvent<'a> {
    ty: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    unit: Option<&'a RawValue>,
    time: Option<&'a RawValue>,
    experiment: Option<&'a RawValue>,
    flag: Option<&'a RawValue>,
    variation: Option<&'a RawValue>,
    name: Option<&'a RawValue>,
    value: Option<&'a RawValue>,
    attributes: Option<&'a RawValue>,
    /// Set when the element is not an object or repeats a field.
    problem: Option<Rejection>,
    /// Later occurrences of a repeated field, kept so that the stored copy
    /// of a rejected event is the event as sent (and a replay sees the
    /// same repetition).
    repeated: Vec<(usize, &'a RawValue)>,
    /// The text of an NDJSON line that is not JSON.
    source: Option<&'a str>,
}

const FIELDS: [&str; 10] = [
    "type",
    "id",
    "unit",
    "time",
    "experiment",
    "flag",
    "variation",
    "name",
    "value",
    "attributes",
];

impl<'a> RawEvent<'a> {
    fn slots(&self) -> [Option<&'a RawValue>; 10] {
        [
            self.ty,
            self.id,
            self.unit,
            self.time,
            self.experiment,
            self.flag,
            self.variation,
            self.name,
            self.value,
            self.attributes,
        ]
    }

    fn slot_mut(&mut self, i: usize) -> &mut Option<&'a RawValue> {
        match i {
            0 => &mut self.ty,
            1 => &mut self.id,
            2 => &mut self.unit,
            3 => &mut self.time,
            4 => &mut self.experiment,
            5 => &mut self.flag,
            6 => &mut self.variation,
            7 => &mut self.name,
            8 => &mut self.value,
            _ => &mut self.attributes,
        }
    }

    /// The recognised fields as a JSON object (what the dead-letter store
    /// keeps of a rejected event).
    pub fn to_json(&self) -> String {
        if let Some(line) = self.source {
            return serde_json::to_string(line).unwrap_or_default();
        }
        let mut out = String::from("{");
        for (name, raw) in FIELDS.iter().zip(self.slots()) {
            if let Some(raw) = raw {
                if out.len() > 1 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(name);
                out.push_str("\":");
                out.push_str(raw.get());
            }
        }
        for (i, raw) in &self.repeated {
            out.push_str(",\"");
            out.push_str(FIELDS[*i]);
            out.push_str("\":");
            out.push_str(raw.get());
        }
        out.push('}');
        out
    }

    fn raw_len(&self) -> usize {
        self.slots().iter().flatten().map(|r| r.get().len()).sum()
    }

    /// The rejection found while parsing, if any.
    pub fn problem(&self) -> Option<&Rejection> {
        self.problem.as_ref()
    }

    /// Validates against the schema and `limits`; `now_ms` dates events
    /// without a time and bounds future ones.
    pub fn validate(&self, limits: &Limits, now_ms: i64) -> Result<EventRef<'a>, Rejection> {
        if let Some(p) = &self.problem {
            return Err(p.clone());
        }
        if self.raw_len() > limits.max_event_bytes {
            return Err(Rejection::new(
                "event_too_large",
                None,
                format!("an event may hold at most {} bytes", limits.max_event_bytes),
            ));
        }
        let ty = required_str(self.ty, "type", 32)?;
        let id = optional_str(self.id, "id", MAX_ID)?;
        let unit = required_str(self.unit, "unit", MAX_UNIT)?;
        let time_ms = match self.time {
            None => now_ms,
            Some(raw) => parse_time(raw)?,
        };
        if time_ms < MIN_TIME_MS || time_ms > now_ms.saturating_add(MAX_FUTURE_MS) {
            return Err(Rejection::new(
                "invalid_time",
                Some("time"),
                "time must be after 2000-01-01 and at most one day ahead of the server's clock",
            ));
        }
        let kind = match ty.as_ref() {
            "exposure" => {
                let experiment = optional_str(self.experiment, "experiment", MAX_KEY)?;
                let flag = optional_str(self.flag, "flag", MAX_KEY)?;
                if experiment.is_none() && flag.is_none() {
                    return Err(Rejection::new(
                        "missing_field",
                        Some("experiment"),
                        "an exposure names an experiment, a flag or both",
                    ));
                }
                let variation = required_str(self.variation, "variation", MAX_KEY)?;
                KindRef::Exposure {
                    experiment,
                    flag,
                    variation,
                    attributes: attributes_of(self.attributes)?,
                }
            }
            "track" => {
                let name = required_str(self.name, "name", MAX_KEY)?;
                let value = match self.value {
                    None => None,
                    Some(raw) if raw.get() == "null" => None,
                    Some(raw) => Some(parse_number(raw, "value")?),
                };
                let attributes = attributes_of(self.attributes)?;
                KindRef::Track {
                    name,
                    value,
                    attributes,
                }
            }
            other => {
                return Err(Rejection::new(
                    "invalid_type",
                    Some("type"),
                    format!("unknown event type {other:?}: use \"exposure\" or \"track\""),
                ));
            }
        };
        Ok(EventRef {
            id,
            unit,
            time_ms,
            kind,
        })
    }
}

/// `attributes`: absent, `null`, or a JSON object of bounded depth.
fn attributes_of(raw: Option<&RawValue>) -> Result<Option<&str>, Rejection> {
    match raw {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) if raw.get().starts_with('{') => {
            if nesting_depth(raw.get()) > MAX_ATTRIBUTE_DEPTH {
                return Err(Rejection::new(
                    "too_deep",
                    Some("attributes"),
                    format!(
                        "attributes may nest at most {MAX_ATTRIBUTE_DEPTH} levels of objects and arrays"
                    ),
                ));
            }
            Ok(Some(raw.get()))
        }
        Some(_) => Err(Rejection::new(
            "invalid_type",
            Some("attributes"),
            "attributes must be a JSON object",
        )),
    }
}

/// The deepest nesting of arrays and objects in valid JSON text.
pub fn nesting_depth(json: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_str, mut escaped) = (false, false);
    for b in json.bytes() {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// A JSON string's value: a slice of the input when it has no escapes.
fn decode_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let s = raw.get();
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(s).ok().map(Cow::Owned)
}

fn optional_str<'a>(
    raw: Option<&'a RawValue>,
    field: &str,
    max: usize,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.get() == "null" {
        return Ok(None);
    }
    let Some(s) = decode_str(raw) else {
        return Err(Rejection::new(
            "invalid_type",
            Some(field),
            format!("{field} must be a string"),
        ));
    };
    if s.is_empty() || s.len() > max {
        return Err(Rejection::new(
            "invalid_length",
            Some(field),
            format!("{field} must hold 1 to {max} bytes"),
        ));
    }
    Ok(Some(s))
}

fn required_str<'a>(
    raw: Option<&'a RawValue>,
    field: &str,
    max: usize,
) -> Result<Cow<'a, str>, Rejection> {
    optional_str(raw, field, max)?
        .ok_or_else(|| Rejection::new("missing_field", Some(field), format!("{field} is required")))
}

fn parse_number(raw: &RawValue, field: &str) -> Result<f64, Rejection> {
    match raw.get().parse::<f64>() {
        Ok(v) if v.is_finite() && !raw.get().starts_with('"') => Ok(v),
        _ => Err(Rejection::new(
            "invalid_type",
            Some(field),
            format!("{field} must be a finite number"),
        )),
    }
}

fn parse_time(raw: &RawValue) -> Result<i64, Rejection> {
    let bad = || {
        Rejection::new(
            "invalid_time",
            Some("time"),
            "time must be milliseconds since the Unix epoch or an RFC 3339 string",
        )
    };
    let s = raw.get();
    if s.starts_with('"') {
        let text = decode_str(raw).ok_or_else(bad)?;
        let t = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
            .map_err(|_| bad())?;
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad());
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    Err(bad())
}

// ---- one-pass parsing -------------------------------------------------

/// Parses a JSON batch: an array of events or `{"events": [...]}`.
pub fn parse_json<'a>(body: &'a [u8], limits: &Limits) -> Result<Vec<RawEvent<'a>>, BatchError> {
    let text = std::str::from_utf8(body).map_err(|_| BatchError::NotUtf8)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let too_many = std::cell::Cell::new(false);
    let seed = BatchSeed {
        max: limits.max_events,
        too_many: &too_many,
    };
    let result = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match result {
        Ok(v) => Ok(v),
        Err(_) if too_many.get() => Err(BatchError::TooManyEvents {
            max: limits.max_events,
        }),
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            Err(BatchError::NotABatch(e.to_string()))
        }
        Err(e) => Err(BatchError::InvalidJson(e.to_string())),
    }
}

/// Parses one event (as kept in the dead-letter store); text that is not a
/// JSON value gives an event rejected as `invalid_json`.
pub fn parse_event(text: &str) -> RawEvent<'_> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = ElementSeed
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    parsed.unwrap_or_else(|e| RawEvent {
        problem: Some(Rejection::new("invalid_json", None, e.to_string())),
        source: Some(text),
        ..RawEvent::default()
    })
}

/// Parses newline-delimited JSON: one event per line. A line that is not
/// JSON rejects that event only.
pub fn parse_ndjson<'a>(body: &'a [u8], limits: &Limits) -> Result<Vec<RawEvent<'a>>, BatchError> {
    let text = std::str::from_utf8(body).map_err(|_| BatchError::NotUtf8)?;
    let mut out = Vec::new();
    for line in text.split('\n') {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if out.len() >= limits.max_events {
            return Err(BatchError::TooManyEvents {
                max: limits.max_events,
            });
        }
        out.push(parse_event(line));
    }
    Ok(out)
}

struct BatchSeed<'c> {
    max: usize,
    too_many: &'c std::cell::Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = Vec<RawEvent<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Vec<RawEvent<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of events or {\"events\": [...]}")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max));
        while let Some(ev) = seq.next_element_seed(ElementSeed)? {
            if out.len() >= self.max {
                self.too_many.set(true);
                return Err(de::Error::custom("too many events"));
            }
            out.push(ev);
        }
        Ok(out)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut events = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "events" && events.is_none() {
                events = Some(map.next_value_seed(BatchSeed {
                    max: self.max,
                    too_many: self.too_many,
                })?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        events.ok_or_else(|| de::Error::missing_field("events"))
    }
}

struct ElementSeed;

impl<'de> DeserializeSeed<'de> for ElementSeed {
    type Value = RawEvent<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn not_object<'a>() -> RawEvent<'a> {
    RawEvent {
        problem: Some(Rejection::new(
            "invalid_type",
            None,
            "an event must be a JSON object",
        )),
        ..RawEvent::default()
    }
}

impl<'de> Visitor<'de> for ElementSeed {
    type Value = RawEvent<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut ev = RawEvent::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Some(i) => {
                    let raw: &'de RawValue = map.next_value()?;
                    let slot = ev.slot_mut(i);
                    if slot.is_none() {
                        *slot = Some(raw);
                        continue;
                    }
                    if ev.problem.is_none() {
                        ev.problem = Some(Rejection::new(
                            "duplicate_field",
                            Some(FIELDS[i]),
                            format!("{} appears twice", FIELDS[i]),
                        ));
                    }
                    // A few repeats show the problem; more would only let
                    // one element hold a list as long as the body.
                    if ev.repeated.len() < 16 {
                        ev.repeated.push((i, raw));
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(ev)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(not_object())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(not_object())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(not_object())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(not_object())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(not_object())
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(not_object())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(not_object())
    }
}

/// A key: the index of a recognised field, or `None`.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(FIELDS.iter().position(|f| *f == v))
    }
}
