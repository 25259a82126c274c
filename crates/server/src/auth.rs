//! API key authentication and access checks.
//!
//! A request names its key in `Authorization: Bearer <secret>` (or
//! `X-API-Key`). Keys are looked up in a small in-process cache first
//! (entries live [`CACHE_TTL`], so a revocation made on another node takes
//! effect within that time; one made on this node is immediate), then in
//! the store, which keeps only the SHA-256 of each secret. The cache is
//! keyed by the secret itself (the process holds it anyway while serving
//! the request) so that a hit costs one hash-map lookup, not a SHA-256.
//! Secrets are never logged.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use switchyard_store::{ApiKey, ApiKeyKind, ConfigStore, Role};

use crate::error::ApiError;
use crate::state::AppState;

pub const CACHE_TTL: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 100_000;

/// A key and when it was read from the store.
type CachedKey = (Arc<ApiKey>, Instant);

/// Recently authenticated keys by secret. The map's hasher is foldhash
/// with a per-process random seed, several times cheaper than SipHash on a
/// 40-byte secret. foldhash does not claim resistance to a determined
/// flooding attack, and needs none here: only secrets the store has
/// verified are inserted, so a caller cannot choose the map's keys.
#[derive(Debug, Default)]
pub struct AuthCache {
    entries: RwLock<HashMap<Box<str>, CachedKey, foldhash::fast::RandomState>>,
}

impl AuthCache {
    pub async fn authenticate(
        &self,
        store: &dyn ConfigStore,
        secret: &str,
    ) -> Result<Option<Arc<ApiKey>>, ApiError> {
        if let Ok(map) = self.entries.read()
            && let Some((key, at)) = map.get(secret)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(Some(key.clone()));
        }
        let Some(key) = store.authenticate(secret).await? else {
            return Ok(None);
        };
        let key = Arc::new(key);
        if let Ok(mut map) = self.entries.write() {
            if map.len() >= CACHE_MAX {
                map.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
                if map.len() >= CACHE_MAX {
                    map.clear();
                }
            }
            map.insert(secret.into(), (key.clone(), Instant::now()));
        }
        Ok(Some(key))
    }

    /// Forgets every cached key (after a revocation on this node).
    pub fn clear(&self) {
        if let Ok(mut map) = self.entries.write() {
            map.clear();
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal(pub Arc<ApiKey>);

impl Principal {
    pub fn key(&self) -> &ApiKey {
        &self.0
    }

    /// The name written to the audit log: `api_key:<id>:<name>`.
    pub fn actor(&self) -> String {
        format!("api_key:{}:{}", self.0.id, self.0.name)
    }

    /// An admin key with at least `role`, allowed on `project` (a key bound
    /// to a project may not act on others; `None` is an organisation-wide
    /// action and needs an unbound key).
    pub fn require_admin(&self, role: Role, project: Option<&str>) -> Result<(), ApiError> {
        let ApiKeyKind::Admin(have) = self.0.kind else {
            return Err(ApiError::Forbidden(
                "this route needs an admin API key; SDK keys may only evaluate and read configuration".into(),
            ));
        };
        if have < role {
            return Err(ApiError::Forbidden(format!(
                "this action needs the {} role; the key has {}",
                role_name(role),
                role_name(have)
            )));
        }
        match (&self.0.project, project) {
            (None, _) => Ok(()),
            (Some(bound), Some(p)) if bound == p => Ok(()),
            (Some(bound), _) => Err(ApiError::Forbidden(format!(
                "this key is limited to project {bound:?}"
            ))),
        }
    }

    /// The environment an SDK key (server or client) is bound to.
    pub fn sdk_environment(&self, allow_client: bool) -> Result<(&str, &str), ApiError> {
        match self.0.kind {
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
        match (&self.0.project, &self.0.environment) {
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
            return Err(ApiError::Unauthorized);
        };
        let key = state
            .auth
            .authenticate(state.store.as_ref(), secret)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        state.limiter.check(&key.id)?;
        Ok(Principal(key))
    }
}
