//! `/api-keys`: create (the secret is in the response, once), list, read,
//! revoke. Admin role; a key bound to a project manages only that
//! project's keys. Keys are not versioned: they are never edited, only
//! created and revoked, so these routes take no `If-Match`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use switchyard_store::{ApiKey, ApiKeyInput, ApiKeyKind, Role};

use super::etag::listed;
use super::input::{ApiPath, Body, allow_any_project, body, check_key, check_name, sees};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api-keys", get(list).post(create))
        .route("/api-keys/{id}", get(read).delete(revoke))
}

/// `kind` is `{"admin": "viewer" | "editor" | "admin"}`, `"server"` or
/// `"client"`, as keys are shown.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    kind: ApiKeyKind,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    environment: Option<String>,
}

/// The created key with its secret, shown this once.
#[derive(Debug, Serialize)]
struct Created {
    #[serde(flatten)]
    key: ApiKey,
    secret: String,
}

async fn list(State(state): State<AppState>, p: Principal) -> ApiResult<Response> {
    allow_any_project(&p, Role::Admin)?;
    let mut keys = state.store.list_api_keys().await?;
    keys.retain(|k| sees(&p, k.project.as_deref()));
    Ok(listed(&keys))
}

async fn create(
    State(state): State<AppState>,
    p: Principal,
    b: Body<CreateKey>,
) -> ApiResult<Response> {
    allow_any_project(&p, Role::Admin)?;
    let input = body(b)?;
    p.require_admin(Role::Admin, input.project.as_deref())?;
    check_name("name", &input.name)?;
    if let Some(project) = &input.project {
        check_key("project", project)?;
    }
    match (input.kind, &input.project, &input.environment) {
        (ApiKeyKind::Admin(_), _, Some(_)) => {
            return Err(ApiError::invalid_field(
                "environment",
                "an admin key is bound to a project or to none, never to an environment",
            ));
        }
        (ApiKeyKind::Admin(_), _, None) => {}
        (_, None, _) => {
            return Err(ApiError::invalid_field(
                "project",
                "server and client keys need a project and an environment",
            ));
        }
        (_, Some(_), None) => {
            return Err(ApiError::invalid_field(
                "environment",
                "server and client keys need a project and an environment",
            ));
        }
        (_, Some(_), Some(env)) => check_key("environment", env)?,
    }
    let made = state
        .store
        .create_api_key(
            &p.actor(),
            ApiKeyInput {
                name: input.name,
                kind: input.kind,
                project: input.project,
                environment: input.environment,
            },
        )
        .await?;
    let location = format!("/api/v1/api-keys/{}", made.key.id);
    let body = Created {
        key: made.key,
        secret: made.secret,
    };
    let mut resp = (StatusCode::CREATED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// The key `id` if `p` may manage it; a key of another project is
/// forbidden, whether or not it exists.
async fn visible(state: &AppState, p: &Principal, id: &str) -> ApiResult<ApiKey> {
    allow_any_project(p, Role::Admin)?;
    let key = state.store.get_api_key(id).await?;
    p.require_admin(Role::Admin, key.project.as_deref())?;
    Ok(key)
}

async fn read(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let key = visible(&state, &p, &id).await?;
    Ok(axum::Json(key).into_response())
}

async fn revoke(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    visible(&state, &p, &id).await?;
    let key = state.store.revoke_api_key(&p.actor(), &id).await?;
    // This node forgets cached keys at once; other nodes within CACHE_TTL.
    state.auth.clear();
    Ok(axum::Json(key).into_response())
}
