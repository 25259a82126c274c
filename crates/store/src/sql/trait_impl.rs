//! [`ConfigStore`] for [`SqlStore`]: each method forwards to the module
//! that implements it.

use async_trait::async_trait;
use switchyard_core::model::ConfigDocument;
use tokio::sync::broadcast;

use super::{Backend, SqlStore};
use crate::error::{Result, StoreError};
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
        self.list_projects_impl().await
    }
    async fn get_project(&self, key: &str) -> Result<Project> {
        self.get_project_impl(key).await
    }
    async fn create_project(&self, actor: &str, input: ProjectInput) -> Result<Project> {
        self.create_project_impl(actor, input).await
    }
    async fn update_project(
        &self,
        actor: &str,
        key: &str,
        expected: Version,
        name: &str,
    ) -> Result<Project> {
        self.update_project_impl(actor, key, expected, name).await
    }
    async fn delete_project(&self, actor: &str, key: &str, expected: Version) -> Result<()> {
        self.delete_project_impl(actor, key, expected).await
    }

    async fn list_environments(&self, project: &str) -> Result<Vec<Environment>> {
        self.list_environments_impl(project).await
    }
    async fn get_environment(&self, project: &str, key: &str) -> Result<Environment> {
        self.get_environment_impl(project, key).await
    }
    async fn create_environment(
        &self,
        actor: &str,
        project: &str,
        input: EnvironmentInput,
    ) -> Result<Environment> {
        self.create_environment_impl(actor, project, input).await
    }
    async fn update_environment(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
        name: &str,
    ) -> Result<Environment> {
        self.update_environment_impl(actor, project, key, expected, name)
            .await
    }
    async fn delete_environment(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
    ) -> Result<()> {
        self.delete_environment_impl(actor, project, key, expected)
            .await
    }

    async fn list_flags(&self, project: &str) -> Result<Vec<FlagDefinition>> {
        self.list_flags_impl(project).await
    }
    async fn get_flag(&self, project: &str, key: &str) -> Result<FlagDefinition> {
        self.get_flag_impl(project, key).await
    }
    async fn create_flag(
        &self,
        actor: &str,
        project: &str,
        input: FlagInput,
    ) -> Result<FlagDefinition> {
        self.create_flag_impl(actor, project, input).await
    }
    async fn update_flag(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
        input: FlagInput,
    ) -> Result<FlagDefinition> {
        self.update_flag_impl(actor, project, key, expected, input)
            .await
    }
    async fn delete_flag(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
    ) -> Result<()> {
        self.delete_flag_impl(actor, project, key, expected).await
    }

    async fn list_segments(&self, project: &str) -> Result<Vec<SegmentDefinition>> {
        self.list_segments_impl(project).await
    }
    async fn get_segment(&self, project: &str, key: &str) -> Result<SegmentDefinition> {
        self.get_segment_impl(project, key).await
    }
    async fn create_segment(
        &self,
        actor: &str,
        project: &str,
        input: SegmentInput,
    ) -> Result<SegmentDefinition> {
        self.create_segment_impl(actor, project, input).await
    }
    async fn update_segment(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
        input: SegmentInput,
    ) -> Result<SegmentDefinition> {
        self.update_segment_impl(actor, project, key, expected, input)
            .await
    }
    async fn delete_segment(
        &self,
        actor: &str,
        project: &str,
        key: &str,
        expected: Version,
    ) -> Result<()> {
        self.delete_segment_impl(actor, project, key, expected)
            .await
    }

    async fn list_experiments(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<Vec<ExperimentDefinition>> {
        self.list_experiments_impl(project, environment).await
    }
    async fn get_experiment(
        &self,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<ExperimentDefinition> {
        self.get_experiment_impl(project, environment, key).await
    }
    async fn create_experiment(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        input: ExperimentInput,
    ) -> Result<ExperimentDefinition> {
        self.create_experiment_impl(actor, project, environment, input)
            .await
    }
    async fn update_experiment(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
        input: ExperimentInput,
    ) -> Result<ExperimentDefinition> {
        self.update_experiment_impl(actor, project, environment, key, expected, input)
            .await
    }
    async fn delete_experiment(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
    ) -> Result<()> {
        self.delete_experiment_impl(actor, project, environment, key, expected)
            .await
    }
    async fn start_experiment(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
    ) -> Result<ExperimentDefinition> {
        self.start_experiment_impl(actor, project, environment, key, expected)
            .await
    }
    async fn stop_experiment(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
        winner: Option<String>,
    ) -> Result<ExperimentDefinition> {
        self.stop_experiment_impl(actor, project, environment, key, expected, winner)
            .await
    }

    async fn list_holdouts(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<Vec<HoldoutDefinition>> {
        self.list_holdouts_impl(project, environment).await
    }
    async fn get_holdout(
        &self,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<HoldoutDefinition> {
        self.get_holdout_impl(project, environment, key).await
    }
    async fn create_holdout(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        input: HoldoutInput,
    ) -> Result<HoldoutDefinition> {
        self.put_holdout(actor, project, environment, None, input)
            .await
    }
    async fn update_holdout(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
        input: HoldoutInput,
    ) -> Result<HoldoutDefinition> {
        if input.key != key {
            return Err(StoreError::Invalid(format!(
                "holdout key {key:?} cannot change to {:?}",
                input.key
            )));
        }
        self.put_holdout(actor, project, environment, Some(expected), input)
            .await
    }
    async fn delete_holdout(
        &self,
        actor: &str,
        project: &str,
        environment: &str,
        key: &str,
        expected: Version,
    ) -> Result<()> {
        self.delete_holdout_impl(actor, project, environment, key, expected)
            .await
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

    async fn list_audit(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>> {
        self.list_audit_impl(filter).await
    }

    async fn environment_document(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<ConfigDocument> {
        self.environment_document_impl(project, environment).await
    }
}
