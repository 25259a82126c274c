//! Compiled configuration snapshots, one per environment, held in memory,
//! and beside them the live API keys ([`Auth`]).
//!
//! Evaluation requests read a snapshot through an `ArcSwap`: a lock-free
//! load, never a database query and never a wait on a writer. A background
//! task listens to the store's change notifications, rebuilds the affected
//! environments' documents, compiles them and swaps the new snapshot in;
//! streaming clients are woken through a `watch` channel per environment.
//! The control API also refreshes a project's snapshots itself after each
//! write, before it answers (`fresh.rs`), so a node reads its own writes.
//!
//! A document's `revision` is its project's change counter, so it moves
//! when any environment of the project changes. A rebuilt document whose
//! content is the same as the current snapshot's (apart from the revision)
//! is neither compiled nor published: only the environments a change
//! touches are recompiled, and only their streaming clients are woken.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use rustc_hash::FxHashMap;
use switchyard_core::{Evaluator, compile};
use switchyard_store::{ConfigStore, StoreError};
use tokio::sync::{broadcast, watch};

use crate::auth::{Auth, KEY_REFRESH};
use crate::metrics::Metrics;

/// One environment's compiled configuration at one revision.
#[derive(Debug)]
pub struct Snapshot {
    pub project: String,
    pub environment: String,
    pub revision: u64,
    pub evaluator: Evaluator,
    /// The document as served to server SDKs.
    pub document: Bytes,
    /// Strong ETag of `document`.
    pub etag: String,
    /// The server-sent `config` event of this snapshot, rendered on first
    /// use and shared by every streaming client.
    pub stream_frame: std::sync::OnceLock<Bytes>,
    /// Evaluation counters per flag, in document order (index as
    /// [`Evaluator::index_of`]); fetched from the registry on first use.
    evaluation_counters: std::sync::OnceLock<Vec<Counter>>,
}

impl Snapshot {
    /// The `switchyard_flag_evaluations` counters of this environment's
    /// flags, indexed like the evaluator's flags.
    #[inline]
    pub fn evaluation_counters(&self, metrics: &Metrics) -> &[Counter] {
        self.evaluation_counters.get_or_init(|| {
            metrics.evaluation_counters(
                &self.project,
                &self.environment,
                self.evaluator.flag_keys(),
            )
        })
    }
}

/// The per-environment slot: current snapshot plus change notification.
#[derive(Debug)]
pub struct Slot {
    current: ArcSwap<Snapshot>,
    changes: watch::Sender<Arc<Snapshot>>,
}

impl Slot {
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A receiver that sees the current snapshot and every later one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.changes.subscribe()
    }

    /// Number of streaming clients attached.
    pub fn subscribers(&self) -> usize {
        self.changes.receiver_count()
    }
}

type Key = (String, String);
/// Project, then environment (FxHash: looked up on every evaluation).
type SlotMap = FxHashMap<String, FxHashMap<String, Arc<Slot>>>;

/// All environments' snapshots, and the live API keys.
#[derive(Debug)]
pub struct Snapshots {
    slots: ArcSwap<SlotMap>,
    /// Held while a new slot map is made from the current one, so that two
    /// refreshes (the follower's and a writer's) never lose each other's work.
    installing: std::sync::Mutex<()>,
    store: Arc<dyn ConfigStore>,
    /// The live API keys, refreshed with the snapshots.
    pub auth: Arc<Auth>,
    /// Subscribed before the first load, for [`Snapshots::follow`]: a
    /// change made between the load and the follower's start is not lost.
    first_changes: std::sync::Mutex<Option<broadcast::Receiver<switchyard_store::Change>>>,
}

impl Snapshots {
    /// Loads every environment of every project, and the live keys.
    pub async fn load(store: Arc<dyn ConfigStore>) -> Result<Arc<Snapshots>, StoreError> {
        let changes = store.subscribe();
        let s = Arc::new(Snapshots {
            slots: ArcSwap::from_pointee(FxHashMap::default()),
            installing: std::sync::Mutex::new(()),
            auth: Arc::new(Auth::load(store.clone()).await?),
            store,
            first_changes: std::sync::Mutex::new(Some(changes)),
        });
        s.reload_all().await?;
        Ok(s)
    }

    /// The slot of one environment, if it exists.
    #[inline]
    pub fn get(&self, project: &str, environment: &str) -> Option<Arc<Slot>> {
        self.slots.load().get(project)?.get(environment).cloned()
    }

    /// Every (project, environment) currently loaded.
    pub fn keys(&self) -> Vec<(String, String)> {
        let map = self.slots.load();
        map.iter()
            .flat_map(|(p, envs)| envs.keys().map(move |e| (p.clone(), e.clone())))
            .collect()
    }

    /// Rebuilds every environment and re-reads the keys (start-up, the
    /// periodic resync, and after missed notifications).
    pub async fn reload_all(&self) -> Result<(), StoreError> {
        self.auth.refresh().await?;
        let mut wanted = Vec::new();
        for p in self.store.list_projects().await? {
            for e in self.store.list_environments(&p.key).await? {
                wanted.push((p.key.clone(), e.key));
            }
        }
        let mut keep = HashMap::new();
        for (p, e) in wanted {
            match self.build(&p, &e).await {
                Ok(snap) => {
                    keep.insert((p, e), snap);
                }
                // Deleted since it was listed: it goes, as in `reload_project`.
                Err(StoreError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        if self.install(keep, None) {
            self.auth.refresh().await?;
        }
        Ok(())
    }

    /// Rebuilds the environments of one project (all of them when
    /// `environment` is `None`).
    pub async fn reload_project(
        &self,
        project: &str,
        environment: Option<&str>,
    ) -> Result<(), StoreError> {
        let envs: Vec<String> = match environment {
            Some(e) => vec![e.to_string()],
            None => match self.store.list_environments(project).await {
                Ok(list) => list.into_iter().map(|e| e.key).collect(),
                Err(StoreError::NotFound { .. }) => Vec::new(),
                Err(e) => return Err(e),
            },
        };
        let mut fresh = HashMap::new();
        for e in envs {
            match self.build(project, &e).await {
                Ok(snap) => {
                    fresh.insert((project.to_string(), e), snap);
                }
                Err(StoreError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        // A deleted environment or project took its keys with it.
        if self.install(fresh, Some((project, environment))) {
            self.auth.refresh().await?;
        }
        Ok(())
    }

    /// The environment's snapshot; the current one when the store's
    /// revision has not moved, or when only the revision has (a change in
    /// another environment of the project): nothing to compile, nobody to
    /// wake.
    async fn build(&self, project: &str, environment: &str) -> Result<Arc<Snapshot>, StoreError> {
        let mut doc = self
            .store
            .environment_document(project, environment)
            .await?;
        if let Some(slot) = self.get(project, environment) {
            let current = slot.load();
            if current.revision == doc.revision {
                return Ok(current);
            }
            let revision = doc.revision;
            doc.revision = current.revision;
            if serde_json::to_vec(&doc)? == current.document {
                return Ok(current);
            }
            doc.revision = revision;
        }
        let evaluator = compile(&doc).map_err(|e| {
            StoreError::Backend(format!(
                "stored configuration of {project}/{environment} does not compile: {e}"
            ))
        })?;
        let document = Bytes::from(serde_json::to_vec(&doc)?);
        Ok(Arc::new(Snapshot {
            project: project.to_string(),
            environment: environment.to_string(),
            revision: doc.revision,
            etag: format!("\"{}-{}\"", doc.revision, document.len()),
            evaluator,
            document,
            stream_frame: std::sync::OnceLock::new(),
            evaluation_counters: std::sync::OnceLock::new(),
        }))
    }

    /// Swaps in fresh snapshots. `scope` says which keys the fresh set
    /// replaces (`None`: all; `Some((p, None))`: all of project `p`;
    /// `Some((p, Some(e)))`: just that one), so deleted environments vanish.
    /// Returns whether an environment vanished.
    fn install(
        &self,
        fresh: HashMap<Key, Arc<Snapshot>>,
        scope: Option<(&str, Option<&str>)>,
    ) -> bool {
        let _turn = self
            .installing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self.slots.load_full();
        let mut removed = false;
        let mut next: HashMap<Key, Arc<Slot>> = HashMap::new();
        let flat = old
            .iter()
            .flat_map(|(p, envs)| envs.iter().map(move |(e, s)| ((p.clone(), e.clone()), s)));
        for (k, slot) in flat {
            let in_scope = match scope {
                None => true,
                Some((p, None)) => k.0 == p,
                Some((p, Some(e))) => k.0 == p && k.1 == e,
            };
            if !in_scope || fresh.contains_key(&k) {
                next.insert(k, slot.clone());
            } else {
                removed = true;
            }
        }
        for (k, snap) in fresh {
            match next.get(&k) {
                Some(slot) => {
                    // Only a newer revision is published: never go back
                    // (notifications can race), never wake streams for nothing.
                    if slot.load().revision < snap.revision {
                        slot.current.store(snap.clone());
                        slot.changes.send_replace(snap);
                    }
                }
                None => {
                    let (tx, _rx) = watch::channel(snap.clone());
                    next.insert(
                        k,
                        Arc::new(Slot {
                            current: ArcSwap::new(snap),
                            changes: tx,
                        }),
                    );
                }
            }
        }
        let mut nested: SlotMap = FxHashMap::default();
        for ((p, e), slot) in next {
            nested.entry(p).or_default().insert(e, slot);
        }
        self.slots.store(Arc::new(nested));
        removed
    }

    /// Follows the store's change notifications until `shutdown` fires.
    /// A lagged receiver (missed notifications) triggers a full reload, and
    /// a full reload also runs every `resync` as a safety net; the keys are
    /// re-read every [`KEY_REFRESH`].
    pub async fn follow(self: Arc<Self>, mut shutdown: watch::Receiver<bool>, resync: Duration) {
        let first = self
            .first_changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let mut changes = first.unwrap_or_else(|| self.store.subscribe());
        let mut tick = tokio::time::interval(resync);
        tick.tick().await;
        let mut keys_tick = tokio::time::interval(KEY_REFRESH);
        keys_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keys_tick.tick().await;
        // A resync (the listener was down) that failed is tried again
        // every second until it succeeds, not left to the periodic one.
        let mut resync_pending = false;
        loop {
            let result = tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)), if resync_pending => {
                    let r = self.reload_all().await;
                    resync_pending = r.is_err();
                    r
                }
                _ = tick.tick() => self.reload_all().await,
                _ = keys_tick.tick() => self.auth.refresh().await.map(drop),
                msg = changes.recv() => match msg {
                    Ok(change) if change.resync => {
                        let r = self.reload_all().await;
                        resync_pending = r.is_err();
                        r
                    }
                    Ok(change) if change.api_keys => self.auth.refresh().await.map(drop),
                    Ok(change) => self.reload_project(&change.project, change.environment.as_deref()).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => self.reload_all().await,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "refreshing configuration snapshots failed");
            }
        }
    }
}
