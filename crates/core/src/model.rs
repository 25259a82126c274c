//! The configuration document: one environment's whole flag, segment and
//! experiment configuration, as JSON.
//!
//! This is the wire and storage shape. It is validated and turned into a
//! fast [`crate::Evaluator`] by [`crate::compile`]; nothing here is evaluated
//! directly. Field names are `snake_case` and unknown fields are rejected, so
//! that a typo in a hand-written document is an error, not a silently ignored
//! rule.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Basis points: 0..=10_000 stands for 0 %..=100 % in 0.01 % steps, the
/// resolution of the bucketing function.
pub type BasisPoints = u32;

/// The whole configuration of one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDocument {
    /// Schema version of the document; only `1` exists.
    #[serde(default = "default_schema")]
    pub schema: u32,
    /// Environment key, for display and diagnostics.
    #[serde(default)]
    pub environment: String,
    /// Monotonic revision of this environment's configuration, set by the
    /// store; SDKs use it to order updates.
    #[serde(default)]
    pub revision: u64,
    #[serde(default)]
    pub flags: Vec<Flag>,
    #[serde(default)]
    pub segments: Vec<Segment>,
    #[serde(default)]
    pub experiments: Vec<Experiment>,
    #[serde(default)]
    pub holdouts: Vec<Holdout>,
}

fn default_schema() -> u32 {
    1
}

impl Default for ConfigDocument {
    fn default() -> Self {
        ConfigDocument {
            schema: 1,
            environment: String::new(),
            revision: 0,
            flags: Vec::new(),
            segments: Vec::new(),
            experiments: Vec::new(),
            holdouts: Vec::new(),
        }
    }
}

/// The value type of a flag; every variation's value must have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagType {
    Boolean,
    String,
    Number,
    Json,
}

impl FlagType {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagType::Boolean => "boolean",
            FlagType::String => "string",
            FlagType::Number => "number",
            FlagType::Json => "json",
        }
    }

    /// Whether `value` is a legal value for a flag of this type. JSON flags
    /// take objects and arrays (OpenFeature's "object" type).
    pub fn admits(self, value: &Value) -> bool {
        match self {
            FlagType::Boolean => value.is_boolean(),
            FlagType::String => value.is_string(),
            FlagType::Number => value.is_number(),
            FlagType::Json => value.is_object() || value.is_array(),
        }
    }
}

/// A flag as configured in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flag {
    pub key: String,
    #[serde(rename = "type")]
    pub flag_type: FlagType,
    pub variations: Vec<Variation>,
    /// Whether the flag is on in this environment. Off serves `off_variation`.
    #[serde(default)]
    pub enabled: bool,
    /// Variation served when the flag is off or a prerequisite fails.
    pub off_variation: String,
    /// Other flags that must evaluate to one of the listed variations for
    /// this flag's rules to be tried.
    #[serde(default)]
    pub prerequisites: Vec<Prerequisite>,
    /// Tried in order; the first rule whose conditions all hold serves.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Served when the flag is on and no rule matched.
    pub fallthrough: Serve,
    /// Free-form metadata returned with evaluations (OFREP `metadata`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variation {
    pub key: String,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prerequisite {
    pub flag: String,
    /// The prerequisite holds when the flag evaluates to one of these.
    pub variations: Vec<String>,
}

/// A targeting rule: all conditions must hold (an empty list always holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Optional stable identifier, echoed in evaluation details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    pub serve: Serve,
}

/// What a rule or the fallthrough serves: exactly one of the three.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Serve {
    /// One fixed variation.
    Variation(String),
    /// A percentage split by the bucketing function, salted by the flag key.
    Split(Split),
    /// Hand the unit to an experiment. If the unit is not assigned (the
    /// experiment is not running, the unit is outside its targeting,
    /// coverage, layer range, or in a holdout) the rule does not match and
    /// evaluation continues with the next rule.
    Experiment(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// Context attribute whose value is the bucketing unit.
    #[serde(default = "default_bucket_by")]
    pub bucket_by: String,
    /// Weights in basis points; they must add up to exactly 10 000.
    pub weights: Vec<WeightedVariation>,
}

pub fn default_bucket_by() -> String {
    TARGETING_KEY.to_string()
}

/// The attribute name that refers to the context's targeting key.
pub const TARGETING_KEY: &str = "targetingKey";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedVariation {
    pub variation: String,
    pub weight: BasisPoints,
}

/// One test on a context attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Attribute name; `targetingKey` is the context's targeting key. For
    /// `in_segment` / `not_in_segment` it is the attribute holding the unit
    /// (usually `targetingKey`).
    pub attribute: String,
    pub op: Operator,
    /// Operand(s): a list for list operators and segment operators (segment
    /// keys); a single value otherwise; absent for `exists`/`not_exists`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub value: Value,
}

/// Condition operators. A condition on an attribute the context does not
/// have is false, except `not_exists`. A type mismatch (say `lt` on a
/// string) is false.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Contains,
    NotContains,
    StartsWith,
    EndsWith,
    Matches,
    NotMatches,
    Lt,
    Lte,
    Gt,
    Gte,
    SemverEq,
    SemverLt,
    SemverLte,
    SemverGt,
    SemverGte,
    Before,
    After,
    Exists,
    NotExists,
    InSegment,
    NotInSegment,
}

impl Operator {
    pub const ALL: [Operator; 25] = [
        Operator::Equals,
        Operator::NotEquals,
        Operator::In,
        Operator::NotIn,
        Operator::Contains,
        Operator::NotContains,
        Operator::StartsWith,
        Operator::EndsWith,
        Operator::Matches,
        Operator::NotMatches,
        Operator::Lt,
        Operator::Lte,
        Operator::Gt,
        Operator::Gte,
        Operator::SemverEq,
        Operator::SemverLt,
        Operator::SemverLte,
        Operator::SemverGt,
        Operator::SemverGte,
        Operator::Before,
        Operator::After,
        Operator::Exists,
        Operator::NotExists,
        Operator::InSegment,
        Operator::NotInSegment,
    ];
}

/// A reusable set of units: explicit inclusions and exclusions by targeting
/// key, and rules (any rule matching includes the unit). Exclusion wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub key: String,
    #[serde(default)]
    pub included: Vec<String>,
    #[serde(default)]
    pub excluded: Vec<String>,
    /// Each rule is a list of conditions that must all hold; segment rules
    /// may not use segment operators.
    #[serde(default)]
    pub rules: Vec<SegmentRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentRule {
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentStatus {
    Draft,
    Running,
    /// Assigns nobody and logs no exposures: units fall through as if the
    /// rule did not match. Resuming (back to `Running`) gives every unit the
    /// arm it had, since assignment depends on the unit's bucket only.
    Paused,
    Stopped,
}

impl ExperimentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentStatus::Draft => "draft",
            ExperimentStatus::Running => "running",
            ExperimentStatus::Paused => "paused",
            ExperimentStatus::Stopped => "stopped",
        }
    }
}

/// An experiment on a flag. It takes effect where one of the flag's rules
/// (or its fallthrough) serves `{"experiment": key}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub key: String,
    pub flag: String,
    pub status: ExperimentStatus,
    /// Arms: flag variations with weights in basis points adding up to 10 000.
    pub variations: Vec<WeightedVariation>,
    /// Share of eligible units that enter the experiment, in basis points.
    #[serde(default = "full_coverage")]
    pub coverage: BasisPoints,
    #[serde(default = "default_bucket_by")]
    pub bucket_by: String,
    /// Experiment-specific targeting, on top of the rule's conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Mutual exclusion: the unit's bucket salted by the layer key must fall
    /// in `[start, end)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerRange>,
    /// Holdouts whose units never enter this experiment.
    #[serde(default)]
    pub holdouts: Vec<String>,
    /// When stopped: the variation served to everyone who reaches the rule.
    /// A stopped experiment without a winner no longer matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// The salt of the experiment's assignment bucket; absent means the
    /// experiment key (the frozen default). Set only when an experiment is
    /// restarted with a fresh randomisation (see `docs/experiments.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// The phase (0 for the first; a restart adds one). It changes no
    /// assignment: it is reported with exposures, so that whoever
    /// deduplicates them counts a unit again in a new phase.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub phase: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Experiment {
    /// The salt its assignment bucket is hashed with.
    pub fn salt(&self) -> &str {
        self.salt.as_deref().unwrap_or(&self.key)
    }
}

fn full_coverage() -> BasisPoints {
    10_000
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerRange {
    pub key: String,
    pub start: BasisPoints,
    pub end: BasisPoints,
}

/// A holdout: the units whose bucket (salted by the holdout key) is below
/// `size` are kept out of every experiment that names this holdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holdout {
    pub key: String,
    pub size: BasisPoints,
    #[serde(default = "default_bucket_by")]
    pub bucket_by: String,
}
