//! The [`ConfigStore`] trait: everything the server asks of a config store.

use async_trait::async_trait;
use switchyard_core::metric::MetricDefinition;
use switchyard_core::model::ConfigDocument;
use tokio::sync::broadcast;

use crate::error::Result;
use crate::types::*;

/// A config store. Every write takes the acting principal (`actor`, written
/// to the audit log with the change, in the same transaction) and, for
/// updates and deletes, the version the caller last read.
///
/// Writes to flags, segments, experiments and holdouts are checked by
/// compiling every affected environment's document with
/// `switchyard_core::compile`; a change the evaluator would reject fails
/// with [`crate::StoreError::Invalid`] and writes nothing.
#[async_trait]
pub trait ConfigStore: Send + Sync + std::fmt::Debug {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Notified after every committed write, also (on PostgreSQL) writes
    /// made by other nodes sharing the database. A receiver that falls more
    /// than 1024 changes behind gets `RecvError::Lagged`, and changes made
    /// while the PostgreSQL listener reconnects are not heard: on either,
    /// re-read the documents (their `revision` says which is newer).
    fn subscribe(&self) -> broadcast::Receiver<Change>;

    // Organisation
    async fn organisation(&self) -> Result<Option<String>>;
    async fn set_organisation(&self, actor: &str, name: &str) -> Result<()>;

    // Projects
    async fn list_projects(&self) -> Result<Vec<Project>>;
    async fn get_project(&self, key: &str) -> Result<Project>;
    async fn create_project(&self, actor: &str, input: ProjectInput) -> Result<Project>;
    /// Renames; the key of a project never changes.
    async fn update_project(
        &self,
        actor: &str,
        key: &str,
        expected: Version,
        name: &str,
    ) -> Result<Project>;
    /// Deletes the project and everything in it.
    async fn delete_project(&self, actor: &str, key: &str, expected: Version) -> Result<()>;

    // Environments
    async fn list_environments(&self, project: &str) -> Result<Vec<Environment>>;
    async fn get_environment(&self, project: &str, key: &str) -> Result<Environment>;
    async fn create_environment(
        &self,
        actor: &str,
        project: &str,
        input: EnvironmentInput,
    ) -> Result<Environment>;
    async fn update_environment(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
        name: &str,
    ) -> Result<Environment>;
    /// Deletes the environment with its flag settings, experiments and holdouts.
    async fn delete_environment(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
    ) -> Result<()>;

    /// The project's creation time and change counter (the `revision` of
    /// its documents, which grows with every change in the project):
    /// together they name one state of the project's configuration, even
    /// across a project deleted and created again. One small read, for
    /// caches.
    async fn project_revision(&self, project: &str) -> Result<(time::OffsetDateTime, u64)>;

    // Flags
    async fn list_flags(&self, project: &str) -> Result<Vec<FlagDefinition>>;
    async fn get_flag(&self, project: &str, key: &str) -> Result<FlagDefinition>;
    async fn create_flag(
        &self,
        actor: &str,
        project: &str,
        input: FlagInput,
    ) -> Result<FlagDefinition>;
    /// Replaces the flag (its key must match `key`); environments not named
    /// in `input.environments` keep their settings.
    async fn update_flag(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
        input: FlagInput,
    ) -> Result<FlagDefinition>;
    async fn delete_flag(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
    ) -> Result<()>;

    // Segments
    async fn list_segments(&self, project: &str) -> Result<Vec<SegmentDefinition>>;
    async fn get_segment(&self, project: &str, key: &str) -> Result<SegmentDefinition>;
    async fn create_segment(
        &self,
        actor: &str,
        project: &str,
        input: SegmentInput,
    ) -> Result<SegmentDefinition>;
    async fn update_segment(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
        input: SegmentInput,
    ) -> Result<SegmentDefinition>;
    async fn delete_segment(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
    ) -> Result<()>;

    // Metric definitions
    async fn list_metrics(&self, project: &str) -> Result<Vec<Metric>>;
    async fn get_metric(&self, project: &str, key: &str) -> Result<Metric>;
    /// Fails with `InvalidField` naming the field the definition's
    /// `validate` objects to.
    async fn create_metric(
        &self,
        actor: &str,
        project: &str,
        input: MetricDefinition,
    ) -> Result<Metric>;
    async fn update_metric(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
        input: MetricDefinition,
    ) -> Result<Metric>;
    /// Fails with `InUse`, naming them, while experiments refer to it.
    async fn delete_metric(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
    ) -> Result<()>;

    // Experiments (per environment)
    async fn list_experiments(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<Vec<ExperimentDefinition>>;
    async fn get_experiment(
        &self,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<ExperimentDefinition>;
    /// Creates a draft. Every metric it names must be defined in the
    /// project (else `InvalidField` naming `metrics[i]`).
    async fn create_experiment(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        input: ExperimentInput,
    ) -> Result<ExperimentDefinition>;
    /// Only a draft can be edited.
    async fn update_experiment(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
        input: ExperimentInput,
    ) -> Result<ExperimentDefinition>;
    async fn delete_experiment(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
    ) -> Result<()>;
    /// Draft to running.
    async fn start_experiment(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
    ) -> Result<ExperimentDefinition>;
    /// Running or paused to stopped, optionally shipping `winner` to everyone.
    async fn stop_experiment(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
        winner: Option<String>,
    ) -> Result<ExperimentDefinition>;

    /// Pause, resume, ship or restart as a new phase (see
    /// `docs/experiments.md`); a step from the wrong status, or an edit a
    /// running experiment cannot take, is [`crate::StoreError::WrongState`].
    async fn experiment_step(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
        step: ExperimentStep,
    ) -> Result<ExperimentDefinition>;
    /// Creates an experiment, and with it (when asked) its flag, and starts
    /// it (when asked), in one transaction with an audit entry for each.
    async fn create_experiment_with(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        new: NewExperiment,
    ) -> Result<ExperimentDefinition>;

    // Holdouts (per environment)
    async fn list_holdouts(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<Vec<HoldoutDefinition>>;
    async fn get_holdout(
        &self,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<HoldoutDefinition>;
    async fn create_holdout(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        input: HoldoutInput,
    ) -> Result<HoldoutDefinition>;
    async fn update_holdout(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
        input: HoldoutInput,
    ) -> Result<HoldoutDefinition>;
    async fn delete_holdout(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
    ) -> Result<()>;

    // API keys
    /// Creates a key; the returned secret is never stored nor shown again.
    async fn create_api_key(&self, actor: &str, input: ApiKeyInput) -> Result<CreatedApiKey>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>>;
    async fn get_api_key(&self, id: &str) -> Result<ApiKey>;
    async fn revoke_api_key(&self, actor: &str, id: &str) -> Result<ApiKey>;
    /// The live (not revoked) key whose secret this is.
    async fn authenticate(&self, secret: &str) -> Result<Option<ApiKey>>;
    /// Every live (not revoked) key with its secret's hash: what a node
    /// needs to authenticate from memory while the store is unreachable.
    async fn live_api_keys(&self) -> Result<Vec<LiveApiKey>>;

    // Web UI users and sessions (sql/users.rs)
    /// Creates a user; the password is checked (at least 10 characters)
    /// and only its Argon2id hash is stored. Audited as kind `user`.
    async fn create_user(&self, actor: &str, input: UserInput) -> Result<User>;
    async fn list_users(&self) -> Result<Vec<User>>;
    /// Disables the user (they can no longer sign in) and ends their sessions.
    async fn disable_user(&self, actor: &str, email: &str) -> Result<User>;
    /// The enabled user with this email and password; `None` otherwise
    /// (an unknown email costs the same as a wrong password).
    async fn check_login(&self, email: &str, password: &str) -> Result<Option<User>>;
    /// Starts a session for an enabled user, valid for `ttl`.
    async fn create_session(&self, user_id: &str, ttl: time::Duration) -> Result<CreatedSession>;
    /// The live session with this id (not expired, its user enabled).
    async fn session(&self, token: &str) -> Result<Option<Session>>;
    async fn delete_session(&self, token: &str) -> Result<()>;

    // Audit log
    async fn list_audit(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>>;

    // Experiment alerts (written by the guardrail monitor)
    /// Records a finding once per (experiment, phase, kind, metric,
    /// variation), audited; `None` when it was already recorded.
    async fn record_experiment_alert(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        experiment: &str,
        alert: AlertInput,
    ) -> Result<Option<ExperimentAlert>>;
    /// An experiment's alerts, oldest first (at most 1,000).
    async fn list_experiment_alerts(
        &self,
        project: &str,
        environment: &str,
        experiment: &str,
    ) -> Result<Vec<ExperimentAlert>>;

    // Documents
    /// The evaluator's document for one environment. Its `revision` is the
    /// project's change counter: it grows with every change in the project.
    async fn environment_document(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<ConfigDocument>;
}
