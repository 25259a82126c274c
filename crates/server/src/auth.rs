//! API key authentication and access checks.
//!
//! A request names its key in `Authorization: Bearer <secret>` (or
//! `X-API-Key`). Every node keeps the live keys in memory, in a [`KeyRing`]
//! indexed by the SHA-256 of their secret (what the store keeps), so that
//! authentication never waits on the store: evaluation, streams and event
//! ingestion go on serving while the database is unreachable. The ring is
//! re-read when the store announces a key change (this node's writes, and
//! on PostgreSQL every node's through `NOTIFY`), after an environment or
//! project is deleted (their keys go with them), and every
//! [`KEY_REFRESH`] as a safety net for missed notifications. A revocation
//! therefore takes effect on every node within moments, and within
//! `KEY_REFRESH` at worst.
//!
//! In front of the ring, a cache keyed by the secret itself (the process
//! holds it anyway while serving the request) makes a repeated key cost one
//! hash-map lookup, not a SHA-256. Its entries are valid for the ring
//! generation they were made under only: any change of the ring voids them.
//!
//! A well-formed secret that the ring does not know may belong to a key
//! created a moment ago elsewhere (another node, `switchyard admin-key`);
//! it is looked up in the store and, if live, accepted without being cached
//! (the ring learns of it at its next refresh). Malformed secrets are
//! refused without a lookup. Secrets are never logged.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use switchyard_store::{ApiKey, ApiKeyKind, ConfigStore, Role, StoreError};
use tokio::sync::watch;

use crate::error::ApiError;
use crate::state::AppState;

/// How often every node re-reads the live keys even without a notification.
pub const KEY_REFRESH: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 100_000;

/// The live keys at one moment.
#[derive(Debug, Default)]
pub struct KeyRing {
    /// Grows with every change of the set; cache entries name the
    /// generation they were made under.
    generation: u64,
    /// By SHA-256 of the secret (lowercase hex).
    by_hash: HashMap<Box<str>, Arc<ApiKey>>,
    /// Ids of the live keys.
    ids: HashSet<Box<str>>,
}

impl KeyRing {
    fn new(generation: u64, keys: impl IntoIterator<Item = (String, ApiKey)>) -> KeyRing {
        let mut ring = KeyRing {
            generation,
            ..KeyRing::default()
        };
        for (hash, key) in keys {
            ring.ids.insert(key.id.as_str().into());
            ring.by_hash.insert(hash.into(), Arc::new(key));
        }
        ring
    }

    /// Whether both rings hold the same keys (ids and hashes).
    fn same_keys(&self, other: &KeyRing) -> bool {
        self.by_hash.len() == other.by_hash.len()
            && self
                .by_hash
                .iter()
                .all(|(h, k)| other.by_hash.get(h).is_some_and(|o| o.id == k.id))
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// A key and the ring generation it was verified under.
type CachedKey = (Arc<ApiKey>, u64);

/// The live keys (a [`KeyRing`], swapped whole) and the per-secret cache.
///
/// The cache's hasher is foldhash with a per-process random seed, several
/// times cheaper than SipHash on a 40-byte secret. foldhash does not claim
/// resistance to a determined flooding attack, and needs none here: only
/// secrets the ring has verified are inserted, so a caller cannot choose
/// the map's keys.
#[derive(Debug)]
pub struct Auth {
    store: Arc<dyn ConfigStore>,
    ring: ArcSwap<KeyRing>,
    /// The ring's generation, for streams that must end with their key.
    changes: watch::Sender<u64>,
    /// Serialises ring replacements, so a slow read of the store never
    /// replaces a newer ring with an older one.
    refreshing: tokio::sync::Mutex<()>,
    cache: RwLock<HashMap<Box<str>, CachedKey, foldhash::fast::RandomState>>,
    /// Rendered `GET /sdk/v1/keys` documents and their tags, per
    /// environment, valid for one ring generation: a relay's poll that
    /// finds nothing changed costs a lookup, not a scan of the ring.
    key_documents: std::sync::Mutex<HashMap<(String, String), KeyDocument>>,
}

/// A rendered key list: (generation, body, ETag).
type KeyDocument = (u64, bytes::Bytes, String);

impl Auth {
    /// Reads the live keys from the store.
    pub async fn load(store: Arc<dyn ConfigStore>) -> Result<Auth, StoreError> {
        let ring = KeyRing::new(1, live_keys(store.as_ref()).await?);
        Ok(Auth {
            store,
            ring: ArcSwap::from_pointee(ring),
            changes: watch::Sender::new(1),
            refreshing: tokio::sync::Mutex::new(()),
            cache: RwLock::default(),
            key_documents: std::sync::Mutex::default(),
        })
    }

    /// Re-reads the live keys; returns whether the set changed (and then
    /// voids the cache and wakes [`Auth::subscribe`]rs). On a store error
    /// the current ring stays.
    pub async fn refresh(&self) -> Result<bool, StoreError> {
        let _turn = self.refreshing.lock().await;
        let keys = live_keys(self.store.as_ref()).await?;
        let current = self.ring.load_full();
        let next = KeyRing::new(current.generation + 1, keys);
        if next.same_keys(&current) {
            return Ok(false);
        }
        self.install(next);
        Ok(true)
    }

    /// Drops key `id` from the ring at once, without asking the store
    /// (after this node revoked it, so the revocation holds here even if
    /// the store fails right after the commit).
    pub async fn forget(&self, id: &str) {
        let _turn = self.refreshing.lock().await;
        let current = self.ring.load_full();
        if !current.ids.contains(id) {
            return;
        }
        let keys = current
            .by_hash
            .iter()
            .filter(|(_, k)| k.id != id)
            .map(|(h, k)| (h.to_string(), ApiKey::clone(k)));
        self.install(KeyRing::new(current.generation + 1, keys));
    }

    fn install(&self, ring: KeyRing) {
        let generation = ring.generation;
        self.ring.store(Arc::new(ring));
        self.clear();
        self.changes.send_replace(generation);
    }

    /// The key whose secret this is, if live.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Arc<ApiKey>>, ApiError> {
        let ring = self.ring.load();
        if let Ok(map) = self.cache.read()
            && let Some((key, generation)) = map.get(secret)
            && *generation == ring.generation
        {
            return Ok(Some(key.clone()));
        }
        if let Some(key) = ring
            .by_hash
            .get(switchyard_store::hash_secret(secret).as_str())
        {
            self.remember(secret, key.clone(), ring.generation);
            return Ok(Some(key.clone()));
        }
        if !switchyard_store::is_well_formed_secret(secret) {
            return Ok(None);
        }
        drop(ring);
        Ok(self.store.authenticate(secret).await?.map(Arc::new))
    }

    fn remember(&self, secret: &str, key: Arc<ApiKey>, generation: u64) {
        if let Ok(mut map) = self.cache.write() {
            if map.len() >= CACHE_MAX {
                map.retain(|_, (_, g)| *g == generation);
                if map.len() >= CACHE_MAX {
                    map.clear();
                }
            }
            map.insert(secret.into(), (key, generation));
        }
    }

    /// Whether key `id` is in the current ring.
    pub fn is_live(&self, id: &str) -> bool {
        self.ring.load().ids.contains(id)
    }

    /// Sees every change of the ring.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The current ring.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.load_full()
    }

    /// The live server and client keys of one environment, with the
    /// SHA-256 of their secrets, ordered by id: what a relay needs to
    /// authenticate that environment's SDKs itself (`GET /sdk/v1/keys`).
    pub fn environment_keys(&self, project: &str, environment: &str) -> Vec<(String, Arc<ApiKey>)> {
        let ring = self.ring.load();
        let mut keys: Vec<(String, Arc<ApiKey>)> = ring
            .by_hash
            .iter()
            .filter(|(_, k)| {
                matches!(k.kind, ApiKeyKind::Server | ApiKeyKind::Client)
                    && k.project.as_deref() == Some(project)
                    && k.environment.as_deref() == Some(environment)
            })
            .map(|(h, k)| (h.to_string(), k.clone()))
            .collect();
        keys.sort_by(|a, b| a.1.id.cmp(&b.1.id));
        keys
    }

    /// The `GET /sdk/v1/keys` document of one environment and its ETag (a
    /// hash of the content, the same on every node), rendered once per
    /// ring generation. Names and prefixes are left out: a relay needs
    /// only what authenticates.
    pub fn environment_keys_document(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<(bytes::Bytes, String), ApiError> {
        let generation = self.ring.load().generation;
        let at = (project.to_string(), environment.to_string());
        let mut documents = self
            .key_documents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((g, body, tag)) = documents.get(&at)
            && *g == generation
        {
            return Ok((body.clone(), tag.clone()));
        }
        let document = switchyard_store::EnvironmentKeys {
            project: project.to_string(),
            environment: environment.to_string(),
            keys: self
                .environment_keys(project, environment)
                .into_iter()
                .map(|(secret_hash, key)| switchyard_store::LiveApiKey {
                    key: ApiKey {
                        name: String::new(),
                        prefix: String::new(),
                        ..ApiKey::clone(&key)
                    },
                    secret_hash,
                })
                .collect(),
        };
        let body = bytes::Bytes::from(
            serde_json::to_vec(&document)
                .map_err(|e| ApiError::Internal(format!("cannot render the key list: {e}")))?,
        );
        let tag = format!("\"{}\"", &switchyard_store::hash_bytes(&body)[..32]);
        // Environments come and go with the ring: keep the cache small.
        documents.retain(|_, (g, _, _)| *g == generation);
        documents.insert(at, (generation, body.clone(), tag.clone()));
        Ok((body, tag))
    }

    /// Forgets every cached secret (the ring stays).
    pub fn clear(&self) {
        if let Ok(mut map) = self.cache.write() {
            map.clear();
        }
    }
}

async fn live_keys(store: &dyn ConfigStore) -> Result<Vec<(String, ApiKey)>, StoreError> {
    Ok(store
        .live_api_keys()
        .await?
        .into_iter()
        .map(|k| (k.secret_hash, k.key))
        .collect())
}

/// The authenticated caller: an API key, or a person signed in to the
/// web UI (a session cookie, `ui.rs`), who acts as an admin key with their
/// role would.
#[derive(Debug, Clone)]
pub struct Principal {
    key: Arc<ApiKey>,
    /// The signed-in user's email, when a session authenticated.
    user: Option<Arc<str>>,
}

impl Principal {
    pub fn key(&self) -> &ApiKey {
        &self.key
    }

    /// The principal of a signed-in user: an admin "key" with their id,
    /// role and project.
    pub fn of_user(user: &switchyard_store::User) -> Principal {
        Principal {
            key: Arc::new(ApiKey {
                id: user.id.clone(),
                name: user.email.clone(),
                kind: ApiKeyKind::Admin(user.role),
                project: user.project.clone(),
                environment: None,
                created_at: user.created_at,
                revoked_at: None,
                prefix: String::new(),
            }),
            user: Some(user.email.as_str().into()),
        }
    }

    /// The signed-in user's email, if a session authenticated.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The name written to the audit log: `api_key:<id>:<name>`, or
    /// `user:<email>` for a person.
    pub fn actor(&self) -> String {
        match &self.user {
            Some(email) => format!("user:{email}"),
            None => format!("api_key:{}:{}", self.key.id, self.key.name),
        }
    }

    /// An admin key with at least `role`, allowed on `project` (a key bound
    /// to a project may not act on others; `None` is an organisation-wide
    /// action and needs an unbound key).
    pub fn require_admin(&self, role: Role, project: Option<&str>) -> Result<(), ApiError> {
        let ApiKeyKind::Admin(have) = self.key.kind else {
            return Err(ApiError::Forbidden(
                "this route needs an admin API key; SDK keys may only evaluate and read configuration".into(),
            ));
        };
        if have < role {
            let who = if self.user.is_some() {
                "you have"
            } else {
                "the key has"
            };
            return Err(ApiError::Forbidden(format!(
                "this action needs the {} role; {who} {}",
                role_name(role),
                role_name(have)
            )));
        }
        match (&self.key.project, project) {
            (None, _) => Ok(()),
            (Some(bound), Some(p)) if bound == p => Ok(()),
            (Some(bound), _) => Err(ApiError::Forbidden(format!(
                "{} limited to project {bound:?}",
                if self.user.is_some() {
                    "you are"
                } else {
                    "this key is"
                }
            ))),
        }
    }

    /// The environment an SDK key (server or client) is bound to.
    pub fn sdk_environment(&self, allow_client: bool) -> Result<(&str, &str), ApiError> {
        match self.key.kind {
            ApiKeyKind::Server => {}
            ApiKeyKind::Client if allow_client => {}
            ApiKeyKind::Client => {
                return Err(ApiError::Forbidden(
                    "client keys may only evaluate flags; this route needs a server SDK key".into(),
                ));
            }
            ApiKeyKind::Admin(_) => {
                return Err(ApiError::Forbidden(
                    "this route needs an SDK key bound to an environment, not an admin key".into(),
                ));
            }
        }
        match (&self.key.project, &self.key.environment) {
            (Some(p), Some(e)) => Ok((p, e)),
            _ => Err(ApiError::Forbidden(
                "this SDK key is not bound to an environment".into(),
            )),
        }
    }
}

pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Viewer => "viewer",
        Role::Editor => "editor",
        Role::Admin => "admin",
    }
}

/// The secret from the request headers, if any.
fn secret_of(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts.headers.get(axum::http::header::AUTHORIZATION)
        && let Ok(v) = v.to_str()
    {
        let v = v.trim();
        if let Some(rest) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(rest.trim());
        }
        return Some(v);
    }
    parts
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(secret) = secret_of(parts).filter(|s| !s.is_empty()) else {
            // No key: a browser session may stand in (ui.rs), and for
            // unsafe methods only with its CSRF token and a same-origin
            // `Origin`.
            let user = crate::ui::session_principal(parts, state).await?;
            state.limiter.check(&user.key.id)?;
            return Ok(user);
        };
        let key = state
            .auth
            .authenticate(secret)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        state.limiter.check(&key.id)?;
        Ok(Principal { key, user: None })
    }
}
