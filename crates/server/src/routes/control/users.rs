//! `/users`: the people who sign in to the web UI. List, create (with an
//! initial password), disable. Organisation-wide admins only (a person or
//! key bound to a project may not manage people). Creating and disabling
//! are audited by the store (kind `user`, keyed by the email; never the
//! password nor its hash). Users are not versioned: they are created and
//! disabled, never edited, so these routes take no `If-Match`.
//!
//! Passwords are never echoed: not in answers, not in error messages (a
//! password that is not a string is refused without quoting it), not in
//! logs (the request type's `Debug` redacts it).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;
use switchyard_store::{Role, UserInput};

use super::etag::listed;
use super::input::{ApiPath, Body, allow_organisation, body, check_key};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/{email}", delete(disable))
}

/// `password` is read as any JSON value so that a wrong type is refused
/// without serde quoting the value in its message.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    email: String,
    password: serde_json::Value,
    role: Role,
    #[serde(default)]
    project: Option<String>,
}

impl std::fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUser")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .field("role", &self.role)
            .field("project", &self.project)
            .finish()
    }
}

async fn list(State(state): State<AppState>, p: Principal) -> ApiResult<Response> {
    allow_organisation(&p, Role::Admin)?;
    let users = state.store.list_users().await?;
    Ok(listed(&users))
}

async fn create(
    State(state): State<AppState>,
    p: Principal,
    b: Body<CreateUser>,
) -> ApiResult<Response> {
    allow_organisation(&p, Role::Admin)?;
    let input = body(b)?;
    let serde_json::Value::String(password) = input.password else {
        return Err(ApiError::invalid_field(
            "password",
            "password must be a string",
        ));
    };
    let project = input.project.filter(|p| !p.is_empty());
    if let Some(project) = &project {
        check_key("project", project)?;
        // A clear field error rather than the store's generic one.
        if let Err(switchyard_store::StoreError::NotFound { .. }) =
            state.store.get_project(project).await
        {
            return Err(ApiError::invalid_field(
                "project",
                format!("there is no project {project:?}"),
            ));
        }
    }
    let user = state
        .store
        .create_user(
            &p.actor(),
            UserInput {
                email: input.email,
                password,
                role: input.role,
                project,
            },
        )
        .await?;
    let location = format!(
        "/api/v1/users/{}",
        percent_encoding::utf8_percent_encode(&user.email, percent_encoding::NON_ALPHANUMERIC)
    );
    let mut resp = (StatusCode::CREATED, axum::Json(&user)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// Disables the person: they can no longer sign in, and their sessions
/// end at once. Disabling someone already disabled changes nothing. You
/// may not disable yourself (the organisation could be left without an
/// admin who can sign in).
async fn disable(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(email): ApiPath<String>,
) -> ApiResult<Response> {
    allow_organisation(&p, Role::Admin)?;
    if p.user()
        .is_some_and(|me| me.eq_ignore_ascii_case(email.trim()))
    {
        return Err(ApiError::Conflict(
            "you cannot disable yourself; ask another organisation admin".into(),
        ));
    }
    let user = state.store.disable_user(&p.actor(), &email).await?;
    Ok(axum::Json(user).into_response())
}
