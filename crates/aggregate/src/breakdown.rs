//! Breakdown of an experiment's results by one exposure attribute (the
//! spec's `breakdown`, e.g. `country`): per value, per variation, the same
//! moments the totals have, kept incrementally.
//!
//! Each unit is put, at its first exposure, in the segment of the
//! attribute's value on that exposure (`"(none)"` when the exposure does
//! not carry it). Memory is bounded: the first [`MAX_VALUES`] distinct
//! values each get a segment; later values go to one overflow segment. The
//! results show the [`TOP_VALUES`] segments with the most units and merge
//! the rest, with the overflow, into `"other"`: a request costs the
//! segments, never the units. A unit costs no more (its segment is a byte
//! in the padding of its record).

use crate::experiment::Bucket;

/// Distinct values that get a segment of their own.
pub const MAX_VALUES: usize = 100;
/// Values shown by name in the results; the rest are `"other"`.
pub const TOP_VALUES: usize = 20;
/// Values are cut to this many bytes (at a character boundary).
pub const MAX_VALUE_BYTES: usize = 64;
/// The value of units whose first exposure did not carry the attribute.
pub const NONE_VALUE: &str = "(none)";

/// The segment of a unit not in the breakdown: the experiment had no
/// breakdown (or another attribute) when the unit was first exposed.
pub(crate) const NO_SEGMENT: u8 = u8::MAX;
/// The segment of values beyond the first [`MAX_VALUES`].
pub(crate) const OVERFLOW: u8 = MAX_VALUES as u8;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Breakdown {
    pub attribute: String,
    /// Segment `i` holds the units of `values[i]`.
    pub values: Vec<String>,
    /// Per segment, then the overflow segment last (`values.len() + 1`).
    pub segments: Vec<Bucket>,
    /// Units first exposed before this breakdown was configured.
    pub unassigned: u64,
}

impl Breakdown {
    pub fn new(attribute: String, nvar: usize, nmetrics: usize) -> Breakdown {
        Breakdown {
            attribute,
            values: Vec::new(),
            segments: vec![Bucket::empty(nvar, nmetrics)],
            unassigned: 0,
        }
    }

    /// The segment of `value`, making one if there is room.
    pub fn segment_of(&mut self, value: &str, nvar: usize, nmetrics: usize) -> u8 {
        if let Some(i) = self.values.iter().position(|v| v == value) {
            return i as u8;
        }
        if self.values.len() >= MAX_VALUES {
            return OVERFLOW;
        }
        self.values.push(value.to_string());
        // The overflow segment stays last.
        let at = self.segments.len() - 1;
        self.segments.insert(at, Bucket::empty(nvar, nmetrics));
        (self.values.len() - 1) as u8
    }

    pub fn segment_mut(&mut self, segment: u8) -> Option<&mut Bucket> {
        match segment {
            NO_SEGMENT => None,
            OVERFLOW => self.segments.last_mut(),
            s => self.segments.get_mut(s as usize),
        }
    }

    /// Approximate heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.values.iter().map(|v| v.capacity() + 24).sum::<usize>()
            + self
                .segments
                .iter()
                .map(|b| b.memory_bytes())
                .sum::<usize>()
    }
}

/// The attribute's value in an exposure's attributes (a JSON object as
/// text): strings as they are, numbers and booleans as JSON, anything else
/// (absent, null, arrays, objects, unreadable) as [`NONE_VALUE`]; cut to
/// [`MAX_VALUE_BYTES`].
pub fn value_of(attributes: Option<&str>, attribute: &str) -> String {
    let v = attributes
        .and_then(|a| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(a).ok())
        .and_then(|mut m| m.remove(attribute));
    let mut s = match v {
        Some(serde_json::Value::String(s)) => s,
        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => v.to_string(),
        _ => return NONE_VALUE.to_string(),
    };
    if s.len() > MAX_VALUE_BYTES {
        let mut end = MAX_VALUE_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_from_the_attributes_and_bounded() {
        assert_eq!(value_of(Some(r#"{"country":"DE"}"#), "country"), "DE");
        assert_eq!(value_of(Some(r#"{"n":3}"#), "n"), "3");
        assert_eq!(value_of(Some(r#"{"b":true}"#), "b"), "true");
        assert_eq!(value_of(Some(r#"{"o":{"x":1}}"#), "o"), NONE_VALUE);
        assert_eq!(value_of(Some(r#"{"country":"DE"}"#), "plan"), NONE_VALUE);
        assert_eq!(value_of(None, "plan"), NONE_VALUE);
        assert_eq!(value_of(Some("not json"), "plan"), NONE_VALUE);
        let long = format!(r#"{{"c":"{}"}}"#, "é".repeat(100));
        let v = value_of(Some(&long), "c");
        assert!(v.len() <= MAX_VALUE_BYTES && v.chars().all(|c| c == 'é'));
    }

    #[test]
    fn distinct_values_beyond_the_bound_share_the_overflow_segment() {
        let mut b = Breakdown::new("c".into(), 2, 1);
        for i in 0..MAX_VALUES {
            assert_eq!(b.segment_of(&format!("v{i}"), 2, 1), i as u8);
        }
        assert_eq!(b.segment_of("v7", 2, 1), 7);
        assert_eq!(b.segment_of("new", 2, 1), OVERFLOW);
        assert_eq!(b.segments.len(), MAX_VALUES + 1);
        assert!(b.segment_mut(OVERFLOW).is_some());
        assert!(b.segment_mut(NO_SEGMENT).is_none());
    }
}
