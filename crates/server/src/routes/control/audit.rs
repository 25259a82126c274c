//! `/audit`: who changed what, when, before and after; newest first, paged
//! with `before_id`. Viewers read; a key bound to a project sees only that
//! project's entries.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use switchyard_store::{AuditFilter, Role};

use super::etag::listed;
use super::input::allow_any_project;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// The kinds of resource the store records.
pub const RESOURCE_KINDS: [&str; 9] = [
    "project",
    "environment",
    "flag",
    "segment",
    "metric",
    "experiment",
    "holdout",
    "api_key",
    "user",
];

pub fn router() -> Router<AppState> {
    Router::new().route("/audit", get(list))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    project: Option<String>,
    resource_kind: Option<String>,
    resource_key: Option<String>,
    limit: Option<u32>,
    before_id: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    p: Principal,
    query: Result<ApiQuery<Query>, ApiError>,
) -> ApiResult<Response> {
    allow_any_project(&p, Role::Viewer)?;
    let ApiQuery(q) = query?;
    let project = match (&p.key().project, q.project) {
        (None, asked) => asked,
        (Some(bound), None) => Some(bound.clone()),
        (Some(bound), Some(asked)) => {
            p.require_admin(Role::Viewer, Some(&asked))?;
            Some(bound.clone()).filter(|b| *b == asked)
        }
    };
    if let Some(kind) = &q.resource_kind
        && !RESOURCE_KINDS.contains(&kind.as_str())
    {
        return Err(ApiError::invalid_field(
            "resource_kind",
            format!("resource_kind is one of {}", RESOURCE_KINDS.join(", ")),
        ));
    }
    if let Some(limit) = q.limit
        && !(1..=1000).contains(&limit)
    {
        return Err(ApiError::invalid_field("limit", "limit is 1 to 1000"));
    }
    let entries = state
        .store
        .list_audit(AuditFilter {
            project,
            resource_kind: q.resource_kind,
            resource_key: q.resource_key,
            limit: q.limit,
            before_id: q.before_id,
        })
        .await?;
    Ok(listed(&entries))
}
