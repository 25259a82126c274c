//! [`ConfigStore`] for [`SqlStore`]: each method names the resource and
//! its scope, and calls the generic operation of `resource.rs` (or the
//! module of what is not a versioned resource).

use async_trait::async_trait;
use switchyard_core::metric::MetricDefinition;
use switchyard_core::model::ConfigDocument;
use tokio::sync::broadcast;

use super::resource::Scope::{self, Environment as Env, Organisation, Project as Proj};
use super::{Backend, SqlStore};
use crate::error::Result;
use crate::store::ConfigStore;
use crate::types::*;

#[async_trait]
impl ConfigStore for SqlStore {
    fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    async fn organisation(&self) -> Result<Option<String>> {
        self.organisation_impl().await
    }
    async fn set_organisation(&self, actor: &str, name: &str) -> Result<()> {
        self.set_organisation_impl(actor, name).await
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        self.list(Organisation).await
    }
    async fn get_project(&self, key: &str) -> Result<Project> {
        self.get(Organisation, key).await
    }
    async fn create_project(&self, actor: &str, input: ProjectInput) -> Result<Project> {
        self.create(actor, Organisation, input).await
    }
    async fn update_project(&self, a: &str, key: &str, v: Version, name: &str) -> Result<Project> {
        rename(self, a, Organisation, key, v, name).await
    }
    async fn delete_project(&self, actor: &str, key: &str, expected: Version) -> Result<()> {
        self.delete::<Project>(actor, Organisation, key, expected)
            .await
    }

    async fn list_environments(&self, project: &str) -> Result<Vec<Environment>> {
        self.list(Proj(project)).await
    }
    async fn get_environment(&self, project: &str, key: &str) -> Result<Environment> {
        self.get(Proj(project), key).await
    }
    async fn create_environment(
        &self,
        actor: &str,
        project: &str,
        input: EnvironmentInput,
    ) -> Result<Environment> {
        self.create(actor, Proj(project), input).await
    }
    async fn update_environment(
        &self,
        a: &str,
        project: &str,
        key: &str,
        v: Version,
        name: &str,
    ) -> Result<Environment> {
        rename(self, a, Proj(project), key, v, name).await
    }
    async fn delete_environment(
        &self,
        a: &str,
        project: &str,
        key: &str,
        v: Version,
    ) -> Result<()> {
        self.delete::<Environment>(a, Proj(project), key, v).await
    }

    async fn project_revision(&self, project: &str) -> Result<(time::OffsetDateTime, u64)> {
        super::rows::project_state(&mut *self.read().await?, project).await
    }
    async fn list_flags(&self, project: &str) -> Result<Vec<FlagDefinition>> {
        self.list(Proj(project)).await
    }
    async fn get_flag(&self, project: &str, key: &str) -> Result<FlagDefinition> {
        self.get(Proj(project), key).await
    }
    async fn create_flag(
        &self,
        a: &str,
        project: &str,
        input: FlagInput,
    ) -> Result<FlagDefinition> {
        self.create(a, Proj(project), input).await
    }
    async fn update_flag(
        &self,
        a: &str,
        project: &str,
        key: &str,
        v: Version,
        input: FlagInput,
    ) -> Result<FlagDefinition> {
        self.replace(a, Proj(project), key, v, input).await
    }
    async fn delete_flag(&self, a: &str, project: &str, key: &str, v: Version) -> Result<()> {
        self.delete::<FlagDefinition>(a, Proj(project), key, v)
            .await
    }

    async fn list_segments(&self, project: &str) -> Result<Vec<SegmentDefinition>> {
        self.list(Proj(project)).await
    }
    async fn get_segment(&self, project: &str, key: &str) -> Result<SegmentDefinition> {
        self.get(Proj(project), key).await
    }
    async fn create_segment(
        &self,
        a: &str,
        project: &str,
        input: SegmentInput,
    ) -> Result<SegmentDefinition> {
        self.create(a, Proj(project), input).await
    }
    async fn update_segment(
        &self,
        a: &str,
        project: &str,
        key: &str,
        v: Version,
        input: SegmentInput,
    ) -> Result<SegmentDefinition> {
        self.replace(a, Proj(project), key, v, input).await
    }
    async fn delete_segment(&self, a: &str, project: &str, key: &str, v: Version) -> Result<()> {
        self.delete::<SegmentDefinition>(a, Proj(project), key, v)
            .await
    }

    async fn list_metrics(&self, project: &str) -> Result<Vec<Metric>> {
        self.list(Proj(project)).await
    }
    async fn get_metric(&self, project: &str, key: &str) -> Result<Metric> {
        self.get(Proj(project), key).await
    }
    async fn create_metric(&self, a: &str, project: &str, m: MetricDefinition) -> Result<Metric> {
        self.create(a, Proj(project), m).await
    }
    async fn update_metric(
        &self,
        a: &str,
        project: &str,
        key: &str,
        v: Version,
        m: MetricDefinition,
    ) -> Result<Metric> {
        self.replace(a, Proj(project), key, v, m).await
    }
    async fn delete_metric(&self, a: &str, project: &str, key: &str, v: Version) -> Result<()> {
        self.delete::<Metric>(a, Proj(project), key, v).await
    }

    async fn list_experiments(&self, p: &str, e: &str) -> Result<Vec<ExperimentDefinition>> {
        self.list(Env(p, e)).await
    }
    async fn get_experiment(&self, p: &str, e: &str, key: &str) -> Result<ExperimentDefinition> {
        self.get(Env(p, e), key).await
    }
    async fn create_experiment(
        &self,
        a: &str,
        p: &str,
        e: &str,
        input: ExperimentInput,
    ) -> Result<ExperimentDefinition> {
        self.create(a, Env(p, e), input).await
    }
    async fn update_experiment(
        &self,
        a: &str,
        p: &str,
        e: &str,
        key: &str,
        v: Version,
        input: ExperimentInput,
    ) -> Result<ExperimentDefinition> {
        self.replace(a, Env(p, e), key, v, input).await
    }
    async fn delete_experiment(
        &self,
        a: &str,
        p: &str,
        e: &str,
        key: &str,
        v: Version,
    ) -> Result<()> {
        self.delete::<ExperimentDefinition>(a, Env(p, e), key, v)
            .await
    }
    async fn start_experiment(
        &self,
        a: &str,
        p: &str,
        e: &str,
        key: &str,
        v: Version,
    ) -> Result<ExperimentDefinition> {
        self.start_experiment_impl(a, Env(p, e), key, v).await
    }
    async fn stop_experiment(
        &self,
        a: &str,
        p: &str,
        e: &str,
        key: &str,
        v: Version,
        winner: Option<String>,
    ) -> Result<ExperimentDefinition> {
        self.stop_experiment_impl(a, Env(p, e), key, v, winner)
            .await
    }

    async fn experiment_step(
        &self,
        a: &str,
        p: &str,
        e: &str,
        key: &str,
        v: Version,
        step: ExperimentStep,
    ) -> Result<ExperimentDefinition> {
        self.experiment_step_impl(a, Env(p, e), key, v, step).await
    }
    async fn create_experiment_with(
        &self,
        a: &str,
        p: &str,
        e: &str,
        new: NewExperiment,
    ) -> Result<ExperimentDefinition> {
        self.create_experiment_with_impl(a, Env(p, e), new).await
    }

    async fn list_holdouts(&self, p: &str, e: &str) -> Result<Vec<HoldoutDefinition>> {
        self.list(Env(p, e)).await
    }
    async fn get_holdout(&self, p: &str, e: &str, key: &str) -> Result<HoldoutDefinition> {
        self.get(Env(p, e), key).await
    }
    async fn create_holdout(
        &self,
        a: &str,
        p: &str,
        e: &str,
        input: HoldoutInput,
    ) -> Result<HoldoutDefinition> {
        self.create(a, Env(p, e), input).await
    }
    async fn update_holdout(
        &self,
        a: &str,
        p: &str,
        e: &str,
        key: &str,
        v: Version,
        input: HoldoutInput,
    ) -> Result<HoldoutDefinition> {
        self.replace(a, Env(p, e), key, v, input).await
    }
    async fn delete_holdout(&self, a: &str, p: &str, e: &str, key: &str, v: Version) -> Result<()> {
        self.delete::<HoldoutDefinition>(a, Env(p, e), key, v).await
    }

    async fn create_api_key(&self, actor: &str, input: ApiKeyInput) -> Result<CreatedApiKey> {
        self.create_api_key_impl(actor, input).await
    }
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        self.list_api_keys_impl().await
    }
    async fn get_api_key(&self, id: &str) -> Result<ApiKey> {
        self.get_api_key_impl(id).await
    }
    async fn revoke_api_key(&self, actor: &str, id: &str) -> Result<ApiKey> {
        self.revoke_api_key_impl(actor, id).await
    }
    async fn authenticate(&self, secret: &str) -> Result<Option<ApiKey>> {
        self.authenticate_impl(secret).await
    }
    async fn live_api_keys(&self) -> Result<Vec<LiveApiKey>> {
        self.live_api_keys_impl().await
    }

    async fn create_user(&self, actor: &str, input: UserInput) -> Result<User> {
        self.create_user_impl(actor, input).await
    }
    async fn list_users(&self) -> Result<Vec<User>> {
        self.list_users_impl().await
    }
    async fn disable_user(&self, actor: &str, email: &str) -> Result<User> {
        self.disable_user_impl(actor, email).await
    }
    async fn check_login(&self, email: &str, password: &str) -> Result<Option<User>> {
        self.check_login_impl(email, password).await
    }
    async fn create_session(&self, user_id: &str, ttl: time::Duration) -> Result<CreatedSession> {
        self.create_session_impl(user_id, ttl).await
    }
    async fn session(&self, token: &str) -> Result<Option<Session>> {
        self.session_impl(token).await
    }
    async fn delete_session(&self, token: &str) -> Result<()> {
        self.delete_session_impl(token).await
    }

    async fn list_audit(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>> {
        self.list_audit_impl(filter).await
    }

    async fn record_experiment_alert(
        &self,
        actor: &str,
        p: &str,
        e: &str,
        experiment: &str,
        alert: AlertInput,
    ) -> Result<Option<ExperimentAlert>> {
        self.record_experiment_alert_impl(actor, p, e, experiment, alert)
            .await
    }
    async fn list_experiment_alerts(
        &self,
        p: &str,
        e: &str,
        experiment: &str,
    ) -> Result<Vec<ExperimentAlert>> {
        self.list_experiment_alerts_impl(p, e, experiment).await
    }

    async fn environment_document(&self, p: &str, e: &str) -> Result<ConfigDocument> {
        self.environment_document_impl(p, e).await
    }
}

/// Renames a project or an environment (their only changeable field).
async fn rename<R>(
    store: &SqlStore,
    actor: &str,
    scope: Scope<'_>,
    key: &str,
    expected: Version,
    name: &str,
) -> Result<R>
where
    R: super::resource::Resource + Named,
{
    store
        .change(actor, "update", scope, key, expected, |r: &mut R| {
            *r.name_mut() = name.to_string();
            Ok(())
        })
        .await
}

/// What [`rename`] changes.
trait Named {
    fn name_mut(&mut self) -> &mut String;
}

impl Named for Project {
    fn name_mut(&mut self) -> &mut String {
        &mut self.name
    }
}

impl Named for Environment {
    fn name_mut(&mut self) -> &mut String {
        &mut self.name
    }
}
