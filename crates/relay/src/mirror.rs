//! What the relay holds of its upstream: per source (one `--key`), the
//! environment's configuration document and its live SDK keys, served to
//! the server's snapshot and key-ring machinery through [`ConfigStore`].
//!
//! The server code that runs inside the relay (OFREP, the SDK routes,
//! event ingestion, the key ring, the snapshots) reads configuration only
//! through the few read methods of [`ConfigStore`] a data plane needs:
//! the environments, their documents, the live keys, and change
//! notifications. [`Mirror`] answers those from what the sources synced;
//! every other method (the control plane) is refused, and no route that
//! would call one is mounted on a relay.
//!
//! An environment is served once both its document and its key list are
//! here (the key list names its project), and stops being served when the
//! upstream refuses the relay's key for it.

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use switchyard_core::metric::MetricDefinition;
use switchyard_core::model::ConfigDocument;
use switchyard_store::*;
use tokio::sync::broadcast;

/// One source's synced state.
#[derive(Debug, Default, Clone)]
pub struct SourceCopy {
    pub document: Option<Arc<ConfigDocument>>,
    pub keys: Option<Arc<EnvironmentKeys>>,
    /// Why the upstream refuses this source's key, while it does.
    pub refused: Option<String>,
}

impl SourceCopy {
    /// `(project, environment)` when this copy is served.
    pub fn served(&self) -> Option<(&str, &str)> {
        let keys = self.keys.as_ref()?;
        self.document.as_ref()?;
        self.refused
            .is_none()
            .then_some((keys.project.as_str(), keys.environment.as_str()))
    }
}

/// The synced copies of every source, as a read-only config store.
#[derive(Debug)]
pub struct Mirror {
    sources: Vec<Mutex<SourceCopy>>,
    changes: broadcast::Sender<Change>,
}

impl Mirror {
    pub fn new(sources: usize) -> Mirror {
        Mirror {
            sources: (0..sources).map(|_| Mutex::default()).collect(),
            changes: broadcast::Sender::new(1024),
        }
    }

    fn lock(&self, source: usize) -> MutexGuard<'_, SourceCopy> {
        self.sources[source]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A copy of one source's state.
    pub fn copy(&self, source: usize) -> SourceCopy {
        self.lock(source).clone()
    }

    /// Every source's state, in `--key` order.
    pub fn copies(&self) -> Vec<SourceCopy> {
        (0..self.sources.len()).map(|i| self.copy(i)).collect()
    }

    /// The source serving `project`/`environment`, if any.
    pub fn source_of(&self, project: &str, environment: &str) -> Option<usize> {
        (0..self.sources.len()).find(|&i| self.lock(i).served() == Some((project, environment)))
    }

    fn announce(&self, copy: &SourceCopy, api_keys: bool) {
        let Some(keys) = &copy.keys else { return };
        // Nobody listening (before the server starts) is fine: it loads
        // everything when it does.
        let _ = self.changes.send(Change {
            project: keys.project.clone(),
            environment: Some(keys.environment.clone()),
            revision: copy.document.as_ref().map_or(0, |d| d.revision),
            api_keys,
            resync: false,
        });
    }

    /// A new document for `source`.
    pub fn set_document(&self, source: usize, document: ConfigDocument) {
        let mut copy = self.lock(source);
        copy.document = Some(Arc::new(document));
        let snapshot = copy.clone();
        drop(copy);
        self.announce(&snapshot, false);
    }

    /// The key list of `source`, as the upstream last sent it; returns
    /// whether anything changed.
    pub fn set_keys(&self, source: usize, keys: EnvironmentKeys) -> bool {
        let mut copy = self.lock(source);
        let was_refused = copy.refused.take().is_some();
        if !was_refused && copy.keys.as_deref() == Some(&keys) {
            return false;
        }
        let first = copy.keys.is_none() || was_refused;
        copy.keys = Some(Arc::new(keys));
        let snapshot = copy.clone();
        drop(copy);
        self.announce(&snapshot, true);
        if first {
            // The environment is served from now on.
            self.announce(&snapshot, false);
        }
        true
    }

    /// The upstream refused the source's key: its environment is no
    /// longer served, and its keys no longer accepted, until it accepts
    /// the key again.
    pub fn refuse(&self, source: usize, why: String) {
        let mut copy = self.lock(source);
        let newly = copy.refused.is_none();
        copy.refused = Some(why);
        let snapshot = copy.clone();
        drop(copy);
        if newly {
            self.announce(&snapshot, true);
            self.announce(&snapshot, false);
        }
    }

    fn served(&self) -> Vec<SourceCopy> {
        self.copies()
            .into_iter()
            .filter(|c| c.served().is_some())
            .collect()
    }
}

fn no_control_plane() -> StoreError {
    StoreError::Invalid(
        "a relay serves evaluation, SDK configuration and events only; \
         make this change on the upstream server"
            .into(),
    )
}

fn epoch() -> time::OffsetDateTime {
    time::OffsetDateTime::UNIX_EPOCH
}

#[async_trait]
impl ConfigStore for Mirror {
    fn backend(&self) -> &'static str {
        "relay"
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    async fn organisation(&self) -> Result<Option<String>> {
        Ok(None)
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        let mut keys: Vec<String> = self
            .served()
            .iter()
            .filter_map(|c| c.served().map(|(p, _)| p.to_string()))
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys
            .into_iter()
            .map(|key| Project {
                name: key.clone(),
                key,
                created_at: epoch(),
                version: 0,
            })
            .collect())
    }

    async fn list_environments(&self, project: &str) -> Result<Vec<Environment>> {
        Ok(self
            .served()
            .iter()
            .filter_map(|c| c.served())
            .filter(|(p, _)| *p == project)
            .map(|(p, e)| Environment {
                project: p.to_string(),
                key: e.to_string(),
                name: e.to_string(),
                version: 0,
            })
            .collect())
    }

    async fn environment_document(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<ConfigDocument> {
        self.served()
            .into_iter()
            .find(|c| c.served() == Some((project, environment)))
            .and_then(|c| c.document.map(|d| ConfigDocument::clone(&d)))
            .ok_or_else(|| StoreError::NotFound {
                kind: "environment",
                key: format!("{project}/{environment}"),
            })
    }

    async fn live_api_keys(&self) -> Result<Vec<LiveApiKey>> {
        Ok(self
            .served()
            .into_iter()
            .filter_map(|c| c.keys)
            .flat_map(|k| k.keys.clone())
            .collect())
    }

    async fn authenticate(&self, secret: &str) -> Result<Option<ApiKey>> {
        let hash = hash_secret(secret);
        Ok(self
            .served()
            .into_iter()
            .filter_map(|c| c.keys)
            .find_map(|k| {
                k.keys
                    .iter()
                    .find(|l| l.secret_hash == hash)
                    .map(|l| l.key.clone())
            }))
    }

    async fn check_login(&self, _: &str, _: &str) -> Result<Option<User>> {
        Ok(None)
    }

    async fn session(&self, _: &str) -> Result<Option<Session>> {
        Ok(None)
    }

    async fn set_organisation(&self, _: &str, _: &str) -> Result<()> {
        Err(no_control_plane())
    }

    async fn get_project(&self, _: &str) -> Result<Project> {
        Err(no_control_plane())
    }

    async fn create_project(&self, _: &str, _: ProjectInput) -> Result<Project> {
        Err(no_control_plane())
    }

    async fn update_project(&self, _: &str, _: &str, _: Version, _: &str) -> Result<Project> {
        Err(no_control_plane())
    }

    async fn delete_project(&self, _: &str, _: &str, _: Version) -> Result<()> {
        Err(no_control_plane())
    }

    async fn get_environment(&self, _: &str, _: &str) -> Result<Environment> {
        Err(no_control_plane())
    }

    async fn create_environment(
        &self,
        _: &str,
        _: &str,
        _: EnvironmentInput,
    ) -> Result<Environment> {
        Err(no_control_plane())
    }

    async fn update_environment(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: Version,
        _: &str,
    ) -> Result<Environment> {
        Err(no_control_plane())
    }

    async fn delete_environment(&self, _: &str, _: &str, _: &str, _: Version) -> Result<()> {
        Err(no_control_plane())
    }

    async fn project_revision(&self, _: &str) -> Result<(time::OffsetDateTime, u64)> {
        Err(no_control_plane())
    }

    async fn list_flags(&self, _: &str) -> Result<Vec<FlagDefinition>> {
        Err(no_control_plane())
    }

    async fn get_flag(&self, _: &str, _: &str) -> Result<FlagDefinition> {
        Err(no_control_plane())
    }

    async fn create_flag(&self, _: &str, _: &str, _: FlagInput) -> Result<FlagDefinition> {
        Err(no_control_plane())
    }

    async fn update_flag(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: Version,
        _: FlagInput,
    ) -> Result<FlagDefinition> {
        Err(no_control_plane())
    }

    async fn delete_flag(&self, _: &str, _: &str, _: &str, _: Version) -> Result<()> {
        Err(no_control_plane())
    }

    async fn list_segments(&self, _: &str) -> Result<Vec<SegmentDefinition>> {
        Err(no_control_plane())
    }

    async fn get_segment(&self, _: &str, _: &str) -> Result<SegmentDefinition> {
        Err(no_control_plane())
    }

    async fn create_segment(&self, _: &str, _: &str, _: SegmentInput) -> Result<SegmentDefinition> {
        Err(no_control_plane())
    }

    async fn update_segment(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: Version,
        _: SegmentInput,
    ) -> Result<SegmentDefinition> {
        Err(no_control_plane())
    }

    async fn delete_segment(&self, _: &str, _: &str, _: &str, _: Version) -> Result<()> {
        Err(no_control_plane())
    }

    async fn list_metrics(&self, _: &str) -> Result<Vec<Metric>> {
        Err(no_control_plane())
    }

    async fn get_metric(&self, _: &str, _: &str) -> Result<Metric> {
        Err(no_control_plane())
    }

    async fn create_metric(&self, _: &str, _: &str, _: MetricDefinition) -> Result<Metric> {
        Err(no_control_plane())
    }

    async fn update_metric(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: Version,
        _: MetricDefinition,
    ) -> Result<Metric> {
        Err(no_control_plane())
    }

    async fn delete_metric(&self, _: &str, _: &str, _: &str, _: Version) -> Result<()> {
        Err(no_control_plane())
    }

    async fn list_experiments(&self, _: &str, _: &str) -> Result<Vec<ExperimentDefinition>> {
        Err(no_control_plane())
    }

    async fn get_experiment(&self, _: &str, _: &str, _: &str) -> Result<ExperimentDefinition> {
        Err(no_control_plane())
    }

    async fn create_experiment(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: ExperimentInput,
    ) -> Result<ExperimentDefinition> {
        Err(no_control_plane())
    }

    async fn update_experiment(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
        _: Version,
        _: ExperimentInput,
    ) -> Result<ExperimentDefinition> {
        Err(no_control_plane())
    }

    async fn delete_experiment(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
        _: Version,
    ) -> Result<()> {
        Err(no_control_plane())
    }

    async fn start_experiment(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
        _: Version,
    ) -> Result<ExperimentDefinition> {
        Err(no_control_plane())
    }

    async fn stop_experiment(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
        _: Version,
        _: Option<String>,
    ) -> Result<ExperimentDefinition> {
        Err(no_control_plane())
    }

    async fn experiment_step(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
        _: Version,
        _: ExperimentStep,
    ) -> Result<ExperimentDefinition> {
        Err(no_control_plane())
    }

    async fn create_experiment_with(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: NewExperiment,
    ) -> Result<ExperimentDefinition> {
        Err(no_control_plane())
    }

    async fn list_holdouts(&self, _: &str, _: &str) -> Result<Vec<HoldoutDefinition>> {
        Err(no_control_plane())
    }

    async fn get_holdout(&self, _: &str, _: &str, _: &str) -> Result<HoldoutDefinition> {
        Err(no_control_plane())
    }

    async fn create_holdout(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: HoldoutInput,
    ) -> Result<HoldoutDefinition> {
        Err(no_control_plane())
    }

    async fn update_holdout(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
        _: Version,
        _: HoldoutInput,
    ) -> Result<HoldoutDefinition> {
        Err(no_control_plane())
    }

    async fn delete_holdout(&self, _: &str, _: &str, _: &str, _: &str, _: Version) -> Result<()> {
        Err(no_control_plane())
    }

    async fn create_api_key(&self, _: &str, _: ApiKeyInput) -> Result<CreatedApiKey> {
        Err(no_control_plane())
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        Err(no_control_plane())
    }

    async fn get_api_key(&self, _: &str) -> Result<ApiKey> {
        Err(no_control_plane())
    }

    async fn revoke_api_key(&self, _: &str, _: &str) -> Result<ApiKey> {
        Err(no_control_plane())
    }

    async fn create_user(&self, _: &str, _: UserInput) -> Result<User> {
        Err(no_control_plane())
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        Err(no_control_plane())
    }

    async fn disable_user(&self, _: &str, _: &str) -> Result<User> {
        Err(no_control_plane())
    }

    async fn create_session(&self, _: &str, _: time::Duration) -> Result<CreatedSession> {
        Err(no_control_plane())
    }

    async fn delete_session(&self, _: &str) -> Result<()> {
        Err(no_control_plane())
    }

    async fn list_audit(&self, _: AuditFilter) -> Result<Vec<AuditEntry>> {
        Err(no_control_plane())
    }

    async fn record_experiment_alert(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
        _: AlertInput,
    ) -> Result<Option<ExperimentAlert>> {
        Err(no_control_plane())
    }

    async fn list_experiment_alerts(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<Vec<ExperimentAlert>> {
        Err(no_control_plane())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(project: &str, environment: &str, secrets: &[&str]) -> EnvironmentKeys {
        EnvironmentKeys {
            project: project.into(),
            environment: environment.into(),
            keys: secrets
                .iter()
                .enumerate()
                .map(|(i, s)| LiveApiKey {
                    key: ApiKey {
                        id: format!("key-{i}"),
                        name: "k".into(),
                        kind: ApiKeyKind::Client,
                        project: Some(project.into()),
                        environment: Some(environment.into()),
                        created_at: epoch(),
                        revoked_at: None,
                        prefix: String::new(),
                    },
                    secret_hash: hash_secret(s),
                })
                .collect(),
        }
    }

    fn document(environment: &str, revision: u64) -> ConfigDocument {
        ConfigDocument {
            environment: environment.into(),
            revision,
            ..ConfigDocument::default()
        }
    }

    #[tokio::test]
    async fn an_environment_is_served_with_both_its_document_and_its_keys_until_refused() {
        let mirror = Mirror::new(2);
        let mut changes = mirror.subscribe();
        mirror.set_document(0, document("production", 3));
        assert!(
            mirror.list_projects().await.unwrap().is_empty(),
            "no key list yet"
        );
        assert!(
            mirror
                .environment_document("demo", "production")
                .await
                .is_err()
        );

        assert!(mirror.set_keys(0, keys("demo", "production", &["secret-a"])));
        assert!(
            !mirror.set_keys(0, keys("demo", "production", &["secret-a"])),
            "unchanged"
        );
        let projects = mirror.list_projects().await.unwrap();
        assert_eq!(projects.len(), 1);
        assert_eq!(projects[0].key, "demo");
        let envs = mirror.list_environments("demo").await.unwrap();
        assert_eq!(envs[0].key, "production");
        assert_eq!(
            mirror
                .environment_document("demo", "production")
                .await
                .unwrap()
                .revision,
            3
        );
        assert_eq!(mirror.live_api_keys().await.unwrap().len(), 1);
        assert_eq!(
            mirror.authenticate("secret-a").await.unwrap().unwrap().id,
            "key-0"
        );
        assert!(mirror.authenticate("secret-b").await.unwrap().is_none());
        assert_eq!(mirror.source_of("demo", "production"), Some(0));
        // Each step was announced: keys, then the environment.
        let mut announced = Vec::new();
        while let Ok(c) = changes.try_recv() {
            announced.push((c.environment, c.api_keys));
        }
        assert!(announced.contains(&(Some("production".into()), true)));
        assert!(announced.contains(&(Some("production".into()), false)));

        mirror.refuse(0, "401".into());
        assert!(
            mirror
                .environment_document("demo", "production")
                .await
                .is_err()
        );
        assert!(mirror.live_api_keys().await.unwrap().is_empty());
        assert!(mirror.authenticate("secret-a").await.unwrap().is_none());
        assert_eq!(mirror.source_of("demo", "production"), None);
        // Taken again: served again.
        assert!(mirror.set_keys(0, keys("demo", "production", &["secret-a"])));
        assert_eq!(mirror.source_of("demo", "production"), Some(0));
    }

    #[tokio::test]
    async fn the_control_plane_is_refused_and_nobody_signs_in() {
        let mirror = Mirror::new(1);
        let e = mirror.list_flags("demo").await.unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{e:?}");
        assert!(
            mirror
                .create_api_key(
                    "a",
                    ApiKeyInput {
                        name: "x".into(),
                        kind: ApiKeyKind::Server,
                        project: None,
                        environment: None,
                    }
                )
                .await
                .is_err()
        );
        assert!(mirror.session("token").await.unwrap().is_none());
        assert!(
            mirror
                .check_login("a@b.c", "password")
                .await
                .unwrap()
                .is_none()
        );
    }
}
