//! Control-plane resources as the store reads and writes them.
//!
//! Each definition carries its `version`, an integer that starts at 1 and
//! grows by one on every change; updates and deletes take the version the
//! caller last read and fail with [`crate::StoreError::Conflict`] when it is
//! stale. Inputs (`*Input`) are what a caller may set: no versions, no
//! timestamps, no status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::metric::{MetricDefinition, MetricRole};
use switchyard_core::model::{
    BasisPoints, Condition, Experiment, ExperimentStatus, FlagType, LayerRange, Prerequisite, Rule,
    SegmentRule, Serve, Variation, WeightedVariation, default_bucket_by,
};
use time::OffsetDateTime;

/// Resource version, for optimistic concurrency (and the server's ETag).
pub type Version = i64;

/// A resource that is changed only at the version its writer last read.
pub trait Versioned {
    fn key(&self) -> &str;
    fn version(&self) -> Version;
}

macro_rules! versioned {
    ($($t:ty),*) => {$(
        impl Versioned for $t {
            fn key(&self) -> &str {
                &self.key
            }
            fn version(&self) -> Version {
                self.version
            }
        }
    )*};
}

versioned!(
    Project,
    Environment,
    FlagDefinition,
    SegmentDefinition,
    ExperimentDefinition,
    HoldoutDefinition
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub key: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub version: Version,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectInput {
    pub key: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub project: String,
    pub key: String,
    pub name: String,
    pub version: Version,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentInput {
    pub key: String,
    pub name: String,
}

/// A flag with its settings in every environment of its project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagDefinition {
    pub project: String,
    pub key: String,
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub flag_type: FlagType,
    pub variations: Vec<Variation>,
    pub tags: Vec<String>,
    /// Returned with every evaluation (OFREP `metadata`): booleans,
    /// strings and numbers.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Archived flags keep their definition but leave every document.
    pub archived: bool,
    /// Keyed by environment key; an environment missing here gets
    /// [`FlagEnvironment::off`] (see [`FlagDefinition::settings_for`]).
    pub environments: BTreeMap<String, FlagEnvironment>,
    pub version: Version,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl FlagDefinition {
    /// The flag's settings in `environment`, or the off default.
    pub fn settings_for(&self, environment: &str) -> FlagEnvironment {
        self.environments
            .get(environment)
            .cloned()
            .unwrap_or_else(|| FlagEnvironment::off(&self.flag_type, &self.variations))
    }
}

/// A flag's settings in one environment (see `docs/evaluation.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagEnvironment {
    #[serde(default)]
    pub enabled: bool,
    pub off_variation: String,
    #[serde(default)]
    pub prerequisites: Vec<Prerequisite>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    pub fallthrough: Serve,
}

impl FlagEnvironment {
    /// The settings of an environment nobody configured yet: off, serving
    /// the `false` variation of a boolean flag, else the first variation.
    pub fn off(flag_type: &FlagType, variations: &[Variation]) -> FlagEnvironment {
        let chosen = match flag_type {
            FlagType::Boolean => variations.iter().find(|v| v.value == Value::Bool(false)),
            _ => None,
        }
        .or(variations.first())
        .map(|v| v.key.clone())
        .unwrap_or_default();
        FlagEnvironment {
            enabled: false,
            off_variation: chosen.clone(),
            prerequisites: Vec::new(),
            rules: Vec::new(),
            fallthrough: Serve::Variation(chosen),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagInput {
    pub key: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "type")]
    pub flag_type: FlagType,
    pub variations: Vec<Variation>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub archived: bool,
    /// Environments not named here are off (on create) or keep their
    /// settings (on update).
    #[serde(default)]
    pub environments: BTreeMap<String, FlagEnvironment>,
}

/// A project-level segment, present in every environment's document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentDefinition {
    pub project: String,
    pub key: String,
    pub name: String,
    pub description: String,
    pub included: Vec<String>,
    pub excluded: Vec<String>,
    pub rules: Vec<SegmentRule>,
    pub version: Version,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentInput {
    pub key: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub included: Vec<String>,
    #[serde(default)]
    pub excluded: Vec<String>,
    #[serde(default)]
    pub rules: Vec<SegmentRule>,
}

/// An experiment in one environment. Its status changes only through the
/// lifecycle steps (`start_experiment`, `stop_experiment`,
/// `experiment_step`; see `docs/experiments.md`): draft, running, paused,
/// stopped (shipped when it has a winner), and back to running as a new
/// phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentDefinition {
    pub project: String,
    pub environment: String,
    pub key: String,
    pub flag: String,
    pub name: String,
    pub hypothesis: String,
    pub status: ExperimentStatus,
    pub variations: Vec<WeightedVariation>,
    pub coverage: BasisPoints,
    pub bucket_by: String,
    pub conditions: Vec<Condition>,
    pub layer: Option<LayerRange>,
    pub holdouts: Vec<String>,
    pub winner: Option<String>,
    /// The metrics to analyse (keys of the project's metric definitions),
    /// each with its role.
    pub metrics: Vec<MetricRef>,
    /// The exposure attribute results are broken down by, if any.
    #[serde(default)]
    pub breakdown_by: Option<String>,
    /// What the guardrail monitor does on an alert.
    #[serde(default)]
    pub guardrails: GuardrailPolicy,
    /// 0 for the first phase; each `restart` adds one and starts a fresh
    /// analysis window at `started_at`.
    #[serde(default)]
    pub phase: u32,
    /// The assignment salt, set when a restart re-randomised
    /// (`"{key}#{phase}"`); `None`: the experiment key.
    #[serde(default)]
    pub salt: Option<String>,
    /// When the current phase started.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub stopped_at: Option<OffsetDateTime>,
    pub version: Version,
}

impl ExperimentDefinition {
    /// The experiment as the configuration document holds it.
    pub fn to_model(&self) -> Experiment {
        Experiment {
            key: self.key.clone(),
            flag: self.flag.clone(),
            status: self.status,
            variations: self.variations.clone(),
            coverage: self.coverage,
            bucket_by: self.bucket_by.clone(),
            conditions: self.conditions.clone(),
            layer: self.layer.clone(),
            holdouts: self.holdouts.clone(),
            winner: self.winner.clone(),
            salt: self.salt.clone(),
            phase: self.phase,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentInput {
    pub key: String,
    pub flag: String,
    pub name: String,
    #[serde(default)]
    pub hypothesis: String,
    pub variations: Vec<WeightedVariation>,
    #[serde(default = "full_coverage")]
    pub coverage: BasisPoints,
    #[serde(default = "default_bucket_by")]
    pub bucket_by: String,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub layer: Option<LayerRange>,
    #[serde(default)]
    pub holdouts: Vec<String>,
    #[serde(default)]
    pub metrics: Vec<MetricRef>,
    #[serde(default)]
    pub breakdown_by: Option<String>,
    #[serde(default)]
    pub guardrails: GuardrailPolicy,
}

/// What the guardrail monitor does when an experiment's guardrail metric
/// is significantly harmed or its sample ratio mismatches: it always
/// records an alert; with `auto_stop` it also stops the experiment and
/// serves the baseline (first) variation to everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailPolicy {
    #[serde(default)]
    pub auto_stop: bool,
}

/// A lifecycle step of a started experiment (see `docs/experiments.md`);
/// `start` and `stop` have their own calls.
#[derive(Debug, Clone, PartialEq)]
pub enum ExperimentStep {
    /// Running to paused: nobody is assigned, no exposure is logged.
    Pause,
    /// Paused to running, with every unit in the arm it had.
    Resume,
    /// Stops it (if it is not stopped yet) and serves `variation` to
    /// everyone who reaches its rule.
    Ship { variation: String },
    /// A new phase: phase + 1, running, a fresh analysis window.
    Restart(RestartInput),
}

/// What a new phase changes; `None` keeps the current setting.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RestartInput {
    /// Re-randomise: the salt becomes `"{key}#{phase}"`.
    pub reshuffle: bool,
    pub variations: Option<Vec<WeightedVariation>>,
    pub coverage: Option<BasisPoints>,
    pub bucket_by: Option<String>,
    pub conditions: Option<Vec<Condition>>,
    /// `Some(None)` removes the layer.
    pub layer: Option<Option<LayerRange>>,
    pub holdouts: Option<Vec<String>>,
}

/// A flag created together with an experiment (see
/// [`crate::ConfigStore::create_experiment_with`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewExperiment {
    pub experiment: ExperimentInput,
    /// Creates this flag too: on in the experiment's environment, its
    /// fallthrough serving the experiment, its off variation the
    /// experiment's first; off elsewhere.
    pub flag: Option<FlagInput>,
    /// Created running rather than as a draft.
    pub start: bool,
}

fn full_coverage() -> BasisPoints {
    10_000
}

/// An experiment's reference to a metric definition of its project, with
/// the role the metric plays there. Written as `"purchase"` (a goal) or
/// `{"metric": "revenue", "role": "guardrail"}`; always shown as the latter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "MetricRefForm")]
pub struct MetricRef {
    pub metric: String,
    pub role: MetricRole,
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a metric key, or {\"metric\": key, \"role\": \"goal\" | \"secondary\" | \"guardrail\"}"
)]
enum MetricRefForm {
    Goal(String),
    WithRole {
        metric: String,
        #[serde(default)]
        role: MetricRole,
    },
}

impl From<MetricRefForm> for MetricRef {
    fn from(form: MetricRefForm) -> Self {
        match form {
            MetricRefForm::Goal(metric) => MetricRef {
                metric,
                role: MetricRole::Goal,
            },
            MetricRefForm::WithRole { metric, role } => MetricRef { metric, role },
        }
    }
}

impl From<&str> for MetricRef {
    fn from(metric: &str) -> Self {
        MetricRef {
            metric: metric.to_string(),
            role: MetricRole::Goal,
        }
    }
}

/// A bare key stands for the metric as a goal, as it is written.
impl PartialEq<&str> for MetricRef {
    fn eq(&self, key: &&str) -> bool {
        self.metric == *key && self.role == MetricRole::Goal
    }
}

/// A metric definition of a project (the definition is
/// `switchyard_core::metric::MetricDefinition`, its fields inline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Map<String, Value>")]
pub struct Metric {
    pub project: String,
    #[serde(flatten)]
    pub definition: MetricDefinition,
    pub version: Version,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl TryFrom<serde_json::Map<String, Value>> for Metric {
    type Error = String;
    fn try_from(mut map: serde_json::Map<String, Value>) -> Result<Self, String> {
        let mut take = |name: &str| map.remove(name).ok_or(format!("missing field `{name}`"));
        let project = take("project")?.as_str().unwrap_or_default().to_string();
        let version = take("version")?.as_i64().ok_or("version is an integer")?;
        let updated_at = take("updated_at")?;
        let updated_at = OffsetDateTime::parse(
            updated_at.as_str().unwrap_or_default(),
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| e.to_string())?;
        let definition = serde_json::from_value(Value::Object(map)).map_err(|e| e.to_string())?;
        Ok(Metric {
            project,
            definition,
            version,
            updated_at,
        })
    }
}

impl Versioned for Metric {
    fn key(&self) -> &str {
        &self.definition.key
    }
    fn version(&self) -> Version {
        self.version
    }
}

/// A holdout in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutDefinition {
    pub project: String,
    pub environment: String,
    pub key: String,
    pub size: BasisPoints,
    pub bucket_by: String,
    pub version: Version,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutInput {
    pub key: String,
    pub size: BasisPoints,
    #[serde(default = "default_bucket_by")]
    pub bucket_by: String,
}

/// What an admin key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

/// The three kinds of API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyKind {
    /// Control-plane access with a role; `project: None` means every project.
    Admin(Role),
    /// Reads one environment's full configuration document.
    Server,
    /// Evaluates flags in one environment, nothing else.
    Client,
}

/// An API key as stored: never the secret, only who it is and what it may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub kind: ApiKeyKind,
    /// `None` only for admin keys that span every project.
    pub project: Option<String>,
    /// Set for server and client keys.
    pub environment: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// The first characters of the secret (`sy_server_AbC1`), to recognise it.
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyInput {
    pub name: String,
    pub kind: ApiKeyKind,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
}

/// A newly created key and its secret. The secret exists only here: the
/// store keeps its SHA-256 hash.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    pub secret: String,
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    /// `create`, `update`, `delete`, `start`, `stop`, `revoke`.
    pub action: String,
    /// `project`, `environment`, `flag`, `segment`, `metric`, `experiment`,
    /// `holdout`, `api_key`.
    pub resource_kind: String,
    pub project: Option<String>,
    pub resource_key: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Which audit entries to list: newest first, at most `limit` (default
/// 100, at most 1000), with an id below `before_id` (a cursor).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditFilter {
    pub project: Option<String>,
    pub resource_kind: Option<String>,
    pub resource_key: Option<String>,
    pub limit: Option<u32>,
    pub before_id: Option<i64>,
}

/// Sent to subscribers after every committed write. `environment` is `None`
/// when the change touches every environment of the project (a flag or a
/// segment). A created or revoked API key sends a change with `api_keys`
/// set (`project` is the key's, empty for an unbound key): nodes that keep
/// the live keys in memory re-read them, so a revocation reaches every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub project: String,
    pub environment: Option<String>,
    pub revision: u64,
    /// API keys changed; no configuration did.
    #[serde(default)]
    pub api_keys: bool,
    /// Changes may have been missed (the PostgreSQL listener lost its
    /// connection and listens again): re-read everything. Never sent
    /// between nodes.
    #[serde(default, skip_serializing)]
    pub resync: bool,
}

/// A live (not revoked) API key with the SHA-256 of its secret, as
/// [`crate::ConfigStore::live_api_keys`] lists them for an in-memory key
/// ring. The hash is not the secret: it cannot be used to authenticate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveApiKey {
    #[serde(flatten)]
    pub key: ApiKey,
    /// Lowercase hex, as [`crate::hash_secret`] computes it.
    pub secret_hash: String,
}

/// The live SDK keys (server and client) of one environment, as
/// `GET /sdk/v1/keys` serves them to a relay, which then authenticates
/// that environment's SDKs from memory as a server node does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentKeys {
    pub project: String,
    pub environment: String,
    pub keys: Vec<LiveApiKey>,
}

/// A finding an experiment's guardrail monitor recorded: a harmed
/// guardrail metric or a sample ratio mismatch, once per phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentAlert {
    pub project: String,
    pub environment: String,
    pub experiment: String,
    pub phase: u32,
    /// `guardrail_harmed` or `sample_ratio_mismatch`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variation: Option<String>,
    pub message: String,
    /// What was done: `recorded`, or `stopped` (the experiment was stopped
    /// and its baseline served to everyone).
    pub action: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What [`crate::ConfigStore::record_experiment_alert`] records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertInput {
    pub phase: u32,
    pub kind: String,
    pub metric: Option<String>,
    pub variation: Option<String>,
    pub message: String,
    pub action: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_reference_is_a_key_or_a_key_with_a_role() {
        let refs: Vec<MetricRef> =
            serde_json::from_str(r#"["purchase", {"metric": "revenue", "role": "guardrail"}]"#)
                .unwrap();
        assert_eq!(refs[0], "purchase");
        assert_eq!(
            refs[1],
            MetricRef {
                metric: "revenue".into(),
                role: MetricRole::Guardrail
            }
        );
        assert_eq!(
            serde_json::to_value(&refs[0]).unwrap(),
            serde_json::json!({"metric": "purchase", "role": "goal"})
        );
        assert!(serde_json::from_str::<MetricRef>(r#"{"metric": "x", "role": "boss"}"#).is_err());
    }

    #[test]
    fn a_metric_reads_back_what_it_writes() {
        let definition = serde_json::from_value(serde_json::json!({
            "key": "revenue", "kind": "sum", "numerator": {"event": "purchase"}}))
        .unwrap();
        let m = Metric {
            project: "p".into(),
            definition,
            version: 3,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        };
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["kind"], "sum");
        assert_eq!(serde_json::from_value::<Metric>(json).unwrap(), m);
    }
}

/// A person who signs in to the web UI: a role overall (`project: None`)
/// or in one project, like an admin API key. Never the password, nor its
/// hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    /// Normalised: trimmed and lowercase.
    pub email: String,
    pub role: Role,
    pub project: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// A disabled user cannot sign in and their sessions are ended.
    #[serde(with = "time::serde::rfc3339::option")]
    pub disabled_at: Option<OffsetDateTime>,
}

/// What creating a user takes. The password is hashed (Argon2id) before
/// anything is stored; it is not kept, nor logged.
#[derive(Clone, PartialEq)]
pub struct UserInput {
    pub email: String,
    pub password: String,
    pub role: Role,
    pub project: Option<String>,
}

impl std::fmt::Debug for UserInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserInput")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .field("role", &self.role)
            .field("project", &self.project)
            .finish()
    }
}

/// A live browser session: whose, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub user: User,
    pub expires_at: OffsetDateTime,
}

/// A new session and its id (the cookie value). The id exists only here:
/// the store keeps its SHA-256 hash.
#[derive(Debug, Clone)]
pub struct CreatedSession {
    pub token: String,
    pub session: Session,
}
