//! Metric definitions: what an experiment measures, per unit, from tracked
//! events. Shared by the config store (which keeps them), the aggregator
//! (which computes them from the event stream) and the results API.
//!
//! A metric turns each exposed unit's tracked events into one number (or,
//! for ratio metrics, a numerator and a denominator):
//!
//! | kind       | per-unit value                                   | analysed as           |
//! |------------|--------------------------------------------------|-----------------------|
//! | `binomial` | 1 if the unit had at least one matching event    | proportion            |
//! | `count`    | number of matching events                        | mean                  |
//! | `sum`      | sum of the matching events' `value`              | mean                  |
//! | `mean`     | sum of `value` over number of matching events    | ratio (delta method)  |
//! | `ratio`    | numerator aggregate over denominator aggregate   | ratio (delta method)  |
//!
//! Only events inside the unit's attribution window count: from its first
//! exposure to `window_hours` later (or until the experiment stops when
//! `window_hours` is `None`). CUPED uses the same per-unit value computed
//! over the `cuped.lookback_hours` before the first exposure.

use serde::{Deserialize, Serialize};

use crate::model::Condition;

/// Longest key accepted, in bytes (the same bound as flag keys).
pub const MAX_METRIC_KEY: usize = 128;
/// Most conditions on one event source.
pub const MAX_METRIC_CONDITIONS: usize = 20;
/// Longest attribution window or CUPED lookback: one year.
pub const MAX_WINDOW_HOURS: u32 = 24 * 366;

/// A metric definition, per project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricDefinition {
    pub key: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub kind: MetricKind,
    /// The events counted (for `ratio`: the numerator).
    pub numerator: EventSource,
    /// `ratio` only: the denominator. Absent for every other kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denominator: Option<EventSource>,
    /// Hours after the unit's first exposure during which its events
    /// count; `None`: until the experiment stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_hours: Option<u32>,
    #[serde(default)]
    pub direction: Direction,
    /// Capping of per-unit values (winsorisation), against outliers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<Cap>,
    #[serde(default)]
    pub cuped: Cuped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Binomial,
    Count,
    Sum,
    Mean,
    Ratio,
}

/// Which tracked events a metric reads, and how a unit's events are
/// aggregated (only meaningful for `ratio`; the other kinds imply it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSource {
    /// The tracked event's `name`.
    pub event: String,
    /// Conditions on the event's `attributes`, with the evaluation
    /// engine's operators (segment operators are not allowed). All must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// For `ratio` sources: count the events or sum their `value`.
    #[serde(default)]
    pub aggregate: Aggregate,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    #[default]
    Count,
    Sum,
}

/// Whether a higher value of the metric is good news.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Higher,
    Lower,
}

/// A cap on per-unit values (applied to the numerator of ratio metrics).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Cap {
    /// Values above this are counted as this.
    Fixed(f64),
    /// Values above this percentile (0 < p < 1, e.g. 0.99) of the exposed
    /// units' values are counted as that percentile.
    Percentile(f64),
}

/// Variance reduction with the pre-exposure value of the same metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cuped {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Hours before the first exposure read as the covariate.
    #[serde(default = "week")]
    pub lookback_hours: u32,
}

impl Default for Cuped {
    fn default() -> Self {
        Cuped {
            enabled: true,
            lookback_hours: week(),
        }
    }
}

fn yes() -> bool {
    true
}

fn week() -> u32 {
    7 * 24
}

/// The role a metric plays in one experiment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricRole {
    /// The decision metric(s).
    #[default]
    Goal,
    Secondary,
    /// Must not be harmed; watched with a sequential test.
    Guardrail,
}

/// What is wrong with a metric definition: the field path and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metric \"{key}\": {field}: {message}")]
pub struct MetricError {
    pub key: String,
    pub field: String,
    pub message: String,
}

impl MetricDefinition {
    /// Checks the definition (keys, kind-specific fields, windows, caps,
    /// conditions' operators and operands).
    pub fn validate(&self) -> Result<(), MetricError> {
        let err = |field: &str, message: &str| MetricError {
            key: self.key.clone(),
            field: field.to_string(),
            message: message.to_string(),
        };
        if !valid_key(&self.key) {
            return Err(err(
                "key",
                "must be 1 to 128 characters of letters, digits, '-', '_' or '.'",
            ));
        }
        check_source(&self.numerator, "numerator").map_err(|(f, m)| err(&f, &m))?;
        match (self.kind, &self.denominator) {
            (MetricKind::Ratio, None) => {
                return Err(err("denominator", "a ratio metric needs a denominator"));
            }
            (MetricKind::Ratio, Some(d)) => {
                check_source(d, "denominator").map_err(|(f, m)| err(&f, &m))?
            }
            (_, Some(_)) => {
                return Err(err("denominator", "only ratio metrics have a denominator"));
            }
            (_, None) => {}
        }
        if let Some(w) = self.window_hours
            && (w == 0 || w > MAX_WINDOW_HOURS)
        {
            return Err(err("window_hours", "must be between 1 and 8784 (a year)"));
        }
        match self.cap {
            Some(Cap::Fixed(c)) if !(c.is_finite() && c > 0.0) => {
                return Err(err("cap.fixed", "must be a positive finite number"));
            }
            Some(Cap::Percentile(p)) if !(p > 0.0 && p < 1.0) => {
                return Err(err("cap.percentile", "must be strictly between 0 and 1"));
            }
            Some(_) if self.kind == MetricKind::Binomial => {
                return Err(err("cap", "a binomial metric cannot be capped"));
            }
            _ => {}
        }
        if self.cuped.lookback_hours == 0 || self.cuped.lookback_hours > MAX_WINDOW_HOURS {
            return Err(err(
                "cuped.lookback_hours",
                "must be between 1 and 8784 (a year)",
            ));
        }
        Ok(())
    }
}

fn check_source(s: &EventSource, at: &str) -> Result<(), (String, String)> {
    if s.event.is_empty() || s.event.len() > 256 {
        return Err((format!("{at}.event"), "must be 1 to 256 bytes".into()));
    }
    if s.conditions.len() > MAX_METRIC_CONDITIONS {
        return Err((
            format!("{at}.conditions"),
            format!("at most {MAX_METRIC_CONDITIONS} conditions"),
        ));
    }
    for (i, c) in s.conditions.iter().enumerate() {
        use crate::model::Operator;
        if matches!(c.op, Operator::InSegment | Operator::NotInSegment) {
            return Err((
                format!("{at}.conditions[{i}].op"),
                "segment operators do not apply to event attributes".into(),
            ));
        }
        crate::condition::check_condition(c)
            .map_err(|m| (format!("{at}.conditions[{i}].value"), m))?;
    }
    Ok(())
}

/// Compiled conditions of an [`EventSource`], tested against an event's
/// attributes.
#[derive(Debug)]
pub struct EventFilter {
    conditions: Vec<crate::condition::CompiledCondition>,
}

impl EventFilter {
    /// Compiles the source's conditions (validate the definition first;
    /// an invalid condition is an error naming it).
    pub fn new(source: &EventSource) -> Result<EventFilter, String> {
        let conditions = source
            .conditions
            .iter()
            .map(crate::condition::check_condition)
            .collect::<Result<_, _>>()?;
        Ok(EventFilter { conditions })
    }

    /// No conditions: every event of the name matches.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Whether every condition holds on `attributes` (an event's
    /// attributes, as a context).
    pub fn matches(&self, attributes: &crate::Context) -> bool {
        self.conditions
            .iter()
            .all(|c| c.holds(attributes, &|_, _| false))
    }
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= MAX_METRIC_KEY
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> MetricDefinition {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_minimal_binomial_metric_has_defaults() {
        let m = parse(r#"{"key":"purchase","kind":"binomial","numerator":{"event":"purchase"}}"#);
        m.validate().unwrap();
        assert_eq!(m.direction, Direction::Higher);
        assert!(m.cuped.enabled);
        assert_eq!(m.cuped.lookback_hours, 168);
        assert_eq!(m.window_hours, None);
    }

    #[test]
    fn a_ratio_needs_a_denominator_and_only_a_ratio_has_one() {
        let m = parse(r#"{"key":"r","kind":"ratio","numerator":{"event":"a"}}"#);
        assert_eq!(m.validate().unwrap_err().field, "denominator");
        let m = parse(
            r#"{"key":"r","kind":"sum","numerator":{"event":"a"},"denominator":{"event":"b"}}"#,
        );
        assert_eq!(m.validate().unwrap_err().field, "denominator");
    }

    #[test]
    fn bad_caps_windows_and_conditions_name_their_field() {
        let m =
            parse(r#"{"key":"r","kind":"sum","numerator":{"event":"a"},"cap":{"percentile":1.5}}"#);
        assert_eq!(m.validate().unwrap_err().field, "cap.percentile");
        let m = parse(r#"{"key":"r","kind":"sum","numerator":{"event":"a"},"window_hours":0}"#);
        assert_eq!(m.validate().unwrap_err().field, "window_hours");
        let m = parse(
            r#"{"key":"r","kind":"count","numerator":{"event":"a","conditions":[{"attribute":"x","op":"matches","value":"("}]}}"#,
        );
        assert_eq!(
            m.validate().unwrap_err().field,
            "numerator.conditions[0].value"
        );
        let m = parse(
            r#"{"key":"r","kind":"count","numerator":{"event":"a","conditions":[{"attribute":"x","op":"in_segment","value":["s"]}]}}"#,
        );
        assert_eq!(
            m.validate().unwrap_err().field,
            "numerator.conditions[0].op"
        );
        let m = parse(r#"{"key":"bad key","kind":"count","numerator":{"event":"a"}}"#);
        assert_eq!(m.validate().unwrap_err().field, "key");
    }

    #[test]
    fn an_event_filter_tests_attributes() {
        let src: EventSource = serde_json::from_str(
            r#"{"event":"purchase","conditions":[{"attribute":"currency","op":"in","value":["EUR","USD"]},{"attribute":"amount","op":"gt","value":10}]}"#,
        )
        .unwrap();
        let f = EventFilter::new(&src).unwrap();
        let ctx = |v: serde_json::Value| crate::Context::from_value(v).unwrap();
        assert!(f.matches(&ctx(serde_json::json!({"currency":"EUR","amount":12}))));
        assert!(!f.matches(&ctx(serde_json::json!({"currency":"GBP","amount":12}))));
        assert!(!f.matches(&ctx(serde_json::json!({"currency":"EUR"}))));
    }
}
