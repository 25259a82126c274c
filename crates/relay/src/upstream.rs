//! Syncing each source (one `--key`) from the upstream.
//!
//! The configuration document is synced by the Rust SDK's own client
//! (stream, polling fallback with `ETag`, backoff, a disk cache), told to
//! hand every document it installs to the [`Mirror`]. The key list is
//! polled from `GET /sdk/v1/keys` every `key_refresh` with
//! `If-None-Match` (a `304` costs the upstream one hash), so a key
//! revoked upstream stops working here within `key_refresh` plus one
//! request, and never costs a call per downstream request. Both are kept
//! on disk, so a relay that restarts while the upstream is unreachable
//! serves its last copy.
//!
//! A refusal (401 or 403) from the upstream takes the source's
//! environment out of service (its SDKs get 401) until the upstream takes
//! the key again: it may be an upstream relay that just started and has
//! no key list yet, so the key list is polled on, and the SDK client,
//! which stops for good on a refusal, is rebuilt when the key is taken again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::{StatusCode, header};
use serde_json::json;
use switchyard_core::model::ConfigDocument;
use switchyard_sdk::{Client, Status};
use switchyard_server::Freshness;
use switchyard_store::EnvironmentKeys;
use tokio::sync::watch;

use crate::forward::ForwardStats;
use crate::mirror::Mirror;

/// The most of a key list the relay reads.
const KEYS_LIMIT: usize = 16 << 20;

/// Where a source's copies live on disk, named by a hash of its key (never
/// the key itself).
#[derive(Debug, Clone)]
struct CachePaths {
    config: PathBuf,
    keys: PathBuf,
}

/// One source: its key, its SDK client and how its key list fares.
struct Source {
    /// The secret; never logged (`Debug` leaves it out).
    key: String,
    /// The first 12 hex characters of the key's SHA-256: names the source
    /// in logs, `/readyz` and cache files.
    id: String,
    paths: CachePaths,
    client: Mutex<Option<Client>>,
    keys: Mutex<KeysState>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Clone)]
struct KeysState {
    last_ok: Option<SystemTime>,
    error: Option<String>,
    /// Refusals in a row.
    refusals: u32,
}

/// Refusals in a row before a source's environment is taken out of
/// service: an upstream relay that restarted without a copy refuses every
/// key until its own first sync, and the relay's SDKs (which give up on a
/// 401) must not be cut off for that.
const REFUSALS_TO_STOP: u32 = 3;

/// Every source, the mirror they fill, and the upstream's address.
#[derive(Debug)]
pub struct Sources {
    pub mirror: Arc<Mirror>,
    upstream: String,
    sources: Vec<Source>,
    http: reqwest::Client,
    key_refresh: Duration,
    pub(crate) forwarding: Arc<ForwardStats>,
    /// The snapshots serving the mirror (set once the server state is
    /// built): an environment counts as served only once it is in them.
    pub(crate) serving: std::sync::OnceLock<Arc<switchyard_server::snapshots::Snapshots>>,
    /// The parked log, whose health `/readyz` reports.
    pub(crate) parked: std::sync::OnceLock<Arc<dyn switchyard_events::EventStream>>,
}

impl Sources {
    /// Loads the cached copies and starts one SDK client per key (each
    /// syncs on its own thread from now on).
    pub(crate) fn start(
        upstream: &str,
        keys: &[String],
        cache_dir: &Path,
        key_refresh: Duration,
        http: reqwest::Client,
        forwarding: Arc<ForwardStats>,
    ) -> Result<Arc<Sources>, String> {
        let mirror = Arc::new(Mirror::new(keys.len()));
        let mut sources = Vec::with_capacity(keys.len());
        for key in keys {
            let id = switchyard_store::hash_secret(key)[..12].to_string();
            let paths = CachePaths {
                config: cache_dir.join(format!("{id}.config.json")),
                keys: cache_dir.join(format!("{id}.keys.json")),
            };
            sources.push(Source {
                key: key.clone(),
                id,
                paths,
                client: Mutex::new(None),
                keys: Mutex::default(),
            });
        }
        let sources = Arc::new(Sources {
            mirror,
            upstream: upstream.trim_end_matches('/').to_string(),
            sources,
            http,
            key_refresh,
            forwarding,
            serving: std::sync::OnceLock::new(),
            parked: std::sync::OnceLock::new(),
        });
        for (i, source) in sources.sources.iter().enumerate() {
            match std::fs::read(&source.paths.keys) {
                Ok(bytes) => match serde_json::from_slice::<EnvironmentKeys>(&bytes) {
                    Ok(keys) => {
                        sources.mirror.set_keys(i, keys);
                    }
                    Err(e) => {
                        tracing::warn!(source = %source.id, error = %e, "ignoring the cached key list")
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(source = %source.id, error = %e, "cannot read the cached key list")
                }
            }
            let client = sources.build_client(i)?;
            *lock(&source.client) = Some(client);
        }
        Ok(sources)
    }

    fn build_client(&self, i: usize) -> Result<Client, String> {
        let source = &self.sources[i];
        let mirror = self.mirror.clone();
        let id = source.id.clone();
        Client::builder(self.upstream.clone(), source.key.clone())
            .events(false)
            .cache_file(&source.paths.config)
            .on_configuration(move |text| match serde_json::from_str::<ConfigDocument>(text) {
                Ok(document) => mirror.set_document(i, document),
                Err(e) => tracing::warn!(source = %id, error = %e, "the upstream sent an unreadable document"),
            })
            .build()
            .map_err(|e| format!("cannot start syncing source {}: {e}", source.id))
    }

    /// The secret of the source serving `project`/`environment`.
    pub(crate) fn key_of(&self, project: &str, environment: &str) -> Option<&str> {
        self.mirror
            .source_of(project, environment)
            .map(|i| self.sources[i].key.as_str())
    }

    /// Whether some source has the key list of `project`/`environment`
    /// (served or not).
    pub(crate) fn knows(&self, project: &str, environment: &str) -> bool {
        self.mirror.copies().iter().any(|c| {
            c.keys
                .as_ref()
                .is_some_and(|k| k.project == project && k.environment == environment)
        })
    }

    /// Whether every source has a key list (synced, or from disk): only
    /// then is an environment no source names surely not served.
    pub(crate) fn all_have_keys(&self) -> bool {
        self.mirror.copies().iter().all(|c| c.keys.is_some())
    }

    /// How many sources (keys) the relay syncs.
    pub fn report_len(&self) -> usize {
        self.sources.len()
    }

    pub(crate) fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Polls every source's key list until `stop`.
    pub(crate) async fn follow_keys(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let mut tasks = Vec::new();
        for i in 0..self.sources.len() {
            tasks.push(tokio::spawn(
                self.clone().follow_source_keys(i, stop.clone()),
            ));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn follow_source_keys(self: Arc<Self>, i: usize, mut stop: watch::Receiver<bool>) {
        let source = &self.sources[i];
        let url = format!("{}/sdk/v1/keys", self.upstream);
        let mut etag: Option<String> = None;
        loop {
            let outcome = tokio::select! {
                outcome = self.fetch_keys(&url, &source.key, etag.as_deref()) => outcome,
                _ = stop.wait_for(|s| *s) => return,
            };
            let ok = match outcome {
                Ok(KeysAnswer::NotModified) => true,
                Ok(KeysAnswer::Changed(keys, tag)) => {
                    if self.mirror.set_keys(i, keys.clone()) {
                        tracing::info!(source = %source.id, project = %keys.project,
                            environment = %keys.environment, keys = keys.keys.len(),
                            "key list synced");
                        if let Err(e) = write_atomically(&source.paths.keys, &keys) {
                            tracing::warn!(source = %source.id, error = %e, "cannot write the key list cache");
                        }
                    }
                    etag = tag;
                    true
                }
                Err(KeysError::Refused(message)) => {
                    let mut state = lock(&source.keys);
                    state.refusals += 1;
                    let refusals = state.refusals;
                    state.error = Some(message.clone());
                    drop(state);
                    if refusals >= REFUSALS_TO_STOP {
                        if self.mirror.copy(i).refused.is_none() {
                            tracing::error!(source = %source.id, error = %message,
                                "the upstream refuses this key: its environment is not served until it takes it again");
                        }
                        self.mirror.refuse(i, message);
                    } else {
                        tracing::warn!(source = %source.id, error = %message, refusals,
                            "the upstream refused this key; serving the last copy while it may be restarting");
                    }
                    etag = None;
                    false
                }
                Err(KeysError::Failed(message)) => {
                    let mut state = lock(&source.keys);
                    // Refusals count only in a row.
                    state.refusals = 0;
                    if state.error.is_none() {
                        tracing::warn!(source = %source.id, error = %message,
                            "cannot sync the key list; serving the last copy");
                    }
                    state.error = Some(message);
                    false
                }
            };
            if ok {
                let mut state = lock(&source.keys);
                state.last_ok = Some(SystemTime::now());
                state.error = None;
                state.refusals = 0;
                drop(state);
                self.revive_client(i);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.key_refresh) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// The SDK client stops for good when the upstream refuses its key;
    /// once the key list is served again, the key is taken again: start a
    /// new client.
    fn revive_client(&self, i: usize) {
        let source = &self.sources[i];
        let failed = lock(&source.client)
            .as_ref()
            .is_none_or(|c| c.status().status == Status::Failed);
        if !failed {
            return;
        }
        match self.build_client(i) {
            Ok(client) => {
                tracing::info!(source = %source.id, "the upstream takes the key again: syncing its configuration");
                *lock(&source.client) = Some(client);
            }
            Err(e) => tracing::error!(source = %source.id, error = %e, "cannot restart syncing"),
        }
    }

    async fn fetch_keys(
        &self,
        url: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<KeysAnswer, KeysError> {
        let mut request = self.http.get(url).bearer_auth(key);
        if let Some(tag) = etag {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        let response = request
            .send()
            .await
            .map_err(|e| KeysError::Failed(format!("GET {url}: {e}")))?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(KeysAnswer::NotModified);
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(KeysError::Refused(format!(
                "GET {url}: the upstream answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(KeysError::Failed(format!("GET {url}: {status}")));
        }
        if response
            .content_length()
            .is_some_and(|n| n > KEYS_LIMIT as u64)
        {
            return Err(KeysError::Failed(format!(
                "GET {url}: the key list is too large"
            )));
        }
        let tag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_limited(response, KEYS_LIMIT)
            .await
            .map_err(|e| KeysError::Failed(format!("GET {url}: {e}")))?;
        let keys: EnvironmentKeys = serde_json::from_slice(&body)
            .map_err(|e| KeysError::Failed(format!("GET {url}: an unreadable key list: {e}")))?;
        check_keys(&keys, key).map_err(|e| KeysError::Failed(format!("GET {url}: {e}")))?;
        Ok(KeysAnswer::Changed(keys, tag))
    }

    /// Whether the server side serves `copy`: its environment is among the
    /// snapshots and the relay's own key in the key ring (both follow the
    /// mirror within moments of a change; until the first time, the
    /// relay's SDKs would get 401 or 403, so it is not ready).
    fn in_service(&self, copy: &crate::mirror::SourceCopy, own_key: &str) -> bool {
        let Some((project, environment)) = copy.served() else {
            return false;
        };
        let Some(snapshots) = self.serving.get() else {
            return true;
        };
        let own = switchyard_store::hash_secret(own_key);
        let own_id = copy
            .keys
            .as_ref()
            .and_then(|k| k.keys.iter().find(|l| l.secret_hash == own))
            .map(|l| l.key.id.as_str());
        snapshots.get(project, environment).is_some()
            && own_id.is_some_and(|id| snapshots.auth.is_live(id))
    }

    /// Each source's state, for `/readyz` and the metrics.
    pub(crate) fn report(&self) -> Vec<SourceReport> {
        let now = SystemTime::now();
        let stale_after = self.key_refresh * 3 + Duration::from_secs(10);
        self.sources
            .iter()
            .enumerate()
            .map(|(i, source)| {
                let copy = self.mirror.copy(i);
                let status = lock(&source.client).as_ref().map(Client::status);
                let keys = lock(&source.keys).clone();
                let keys_current = keys
                    .last_ok
                    .is_some_and(|t| now.duration_since(t).unwrap_or_default() < stale_after);
                let config_current = status.as_ref().is_some_and(|s| s.status == Status::Ready);
                let state = if copy.refused.is_some() {
                    SourceState::Refused
                } else if !self.in_service(&copy, &source.key) {
                    SourceState::Missing
                } else if keys_current && config_current {
                    SourceState::Current
                } else {
                    SourceState::Stale
                };
                SourceReport {
                    project: copy.keys.as_ref().map(|k| k.project.clone()),
                    environment: copy.keys.as_ref().map(|k| k.environment.clone()),
                    state,
                    streaming: status.as_ref().is_some_and(|s| s.streaming),
                    last_sync: status.and_then(|s| s.last_sync),
                }
            })
            .collect()
    }
}

enum KeysAnswer {
    NotModified,
    Changed(EnvironmentKeys, Option<String>),
}

enum KeysError {
    Refused(String),
    Failed(String),
}

/// How current one source's copy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceState {
    Current,
    Stale,
    Missing,
    Refused,
}

impl SourceState {
    pub(crate) const ALL: [SourceState; 4] = [
        SourceState::Current,
        SourceState::Stale,
        SourceState::Missing,
        SourceState::Refused,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            SourceState::Current => "current",
            SourceState::Stale => "stale",
            SourceState::Missing => "missing",
            SourceState::Refused => "refused",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SourceReport {
    pub project: Option<String>,
    pub environment: Option<String>,
    pub state: SourceState,
    pub streaming: bool,
    pub last_sync: Option<SystemTime>,
}

impl switchyard_server::UpstreamHealth for Sources {
    fn check(&self) -> (Freshness, serde_json::Value) {
        let reports = self.report();
        let freshness = if reports.iter().any(|r| r.state == SourceState::Missing) {
            Freshness::Missing
        } else if reports.iter().any(|r| r.state != SourceState::Current) {
            Freshness::Stale
        } else {
            Freshness::Current
        };
        // Counts only: `/readyz` needs no key. What each environment is
        // and how old its copy is are in the metrics and the log.
        let count = |state: SourceState| reports.iter().filter(|r| r.state == state).count();
        let environments: serde_json::Map<String, serde_json::Value> = SourceState::ALL
            .iter()
            .map(|&state| (state.name().to_string(), json!(count(state))))
            .collect();
        let forwarding = self.forwarding.report();
        // A parked log that cannot write would stop the main forwarder as
        // soon as an event must be parked: not ready, as for the event log.
        let parked_log = match self.parked.get().map(|p| p.health()) {
            Some(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the parked-event log cannot write");
                "cannot_write"
            }
            _ => "ok",
        };
        let freshness = if parked_log == "ok" {
            freshness
        } else {
            Freshness::Missing
        };
        (
            freshness,
            json!({
                "environments": environments,
                "forwarding": forwarding,
                "parked_log": parked_log,
            }),
        )
    }

    fn encode_metrics(&self, out: &mut String) {
        crate::metrics::encode(self, out);
    }
}

/// A key list is taken only if it holds nothing but server and client
/// keys of its own environment, this relay's key among them: whatever the
/// upstream sends, the relay never accepts an admin key, nor a key of an
/// environment it did not ask for.
fn check_keys(list: &EnvironmentKeys, own: &str) -> Result<(), String> {
    use switchyard_store::ApiKeyKind;
    for k in &list.keys {
        let of_env = k.key.project.as_deref() == Some(list.project.as_str())
            && k.key.environment.as_deref() == Some(list.environment.as_str());
        if !of_env || !matches!(k.key.kind, ApiKeyKind::Server | ApiKeyKind::Client) {
            return Err(format!(
                "the key list of {}/{} names a key that is not one of its SDK keys ({}); ignored",
                list.project, list.environment, k.key.id
            ));
        }
    }
    let own = switchyard_store::hash_secret(own);
    if !list.keys.iter().any(|k| k.secret_hash == own) {
        return Err("the key list does not name this relay's own key; ignored".into());
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads a body, failing past `limit` bytes.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer exceeds {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Writes `value` as JSON so that a crash leaves the old file or the new
/// one: a temporary file beside it, synced, then renamed.
fn write_atomically(path: &Path, value: &impl serde::Serialize) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(value)?)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}
