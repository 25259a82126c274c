//! Flags: the list (search, filters by tag, status per environment and
//! staleness, the last change) and the editor.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;
use switchyard_core::model::Serve;
use switchyard_store::{Environment, FlagDefinition, FlagEnvironment};

use super::layout::{self, Frame, Nav, Viewer, error_page, store_error};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/p/{project}/flags", get(list))
        .route(
            "/ui/p/{project}/flags/new",
            get(super::flag_editor::new_flag),
        )
        .route(
            "/ui/p/{project}/flags/{key}",
            get(super::flag_editor::flag_page),
        )
}

/// A flag no one has changed for this long, serving one variation in
/// every environment, is shown as stale: a candidate for removal.
pub const STALE_AFTER: time::Duration = time::Duration::days(30);

/// Flags on one page of the list.
pub const PAGE_SIZE: usize = 100;

#[derive(Debug, Default, Deserialize, serde::Serialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    tag: String,
    /// `ENV:on` or `ENV:off`.
    #[serde(default)]
    status: String,
    #[serde(default)]
    stale: Option<String>,
    #[serde(default)]
    archived: Option<String>,
    /// 1-based page of the filtered list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    page: Option<usize>,
}

/// Whether the flag serves a single, fixed variation in `env` (off, or on
/// with no rules and a fixed fallthrough).
fn serves_one(settings: &FlagEnvironment) -> bool {
    !settings.enabled
        || (settings.rules.is_empty()
            && settings.prerequisites.is_empty()
            && matches!(settings.fallthrough, Serve::Variation(_)))
}

/// Unchanged for [`STALE_AFTER`] and serving one variation everywhere.
pub fn is_stale(flag: &FlagDefinition, envs: &[Environment], now: time::OffsetDateTime) -> bool {
    now - flag.updated_at > STALE_AFTER
        && envs.iter().all(|e| serves_one(&flag.settings_for(&e.key)))
}

fn status_cell(project: &str, flag: &FlagDefinition, env: &Environment, can_edit: bool) -> Markup {
    let s = flag.settings_for(&env.key);
    let detail = if !s.enabled {
        format!("serves {}", s.off_variation)
    } else if s.rules.is_empty() {
        match &s.fallthrough {
            Serve::Variation(v) => format!("serves {v}"),
            Serve::Split(_) => "percentage rollout".to_string(),
            Serve::Experiment(e) => format!("experiment {e}"),
        }
    } else {
        format!(
            "{} rule{}",
            s.rules.len(),
            if s.rules.len() == 1 { "" } else { "s" }
        )
    };
    html! {
        @if s.enabled { span.badge.on { "On" } } @else { span.badge.off { "Off" } }
        div.small.muted { (detail) }
        @if can_edit { (super::flag_editor::switch_button(project, &flag.key, env, s.enabled, flag.version)) }
    }
}

async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(project): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Some(page) = viewer.refused(&project) {
        return page;
    }
    let loaded = async {
        let projects = state.store.list_projects().await?;
        let envs = state.store.list_environments(&project).await?;
        let flags = state.ui.flags.flags(state.store.as_ref(), &project).await?;
        Ok::<_, switchyard_store::StoreError>((projects, envs, flags))
    }
    .await;
    let (projects, envs, flags) = match loaded {
        Ok(x) => x,
        Err(e) => return error_page(Some(&viewer), &store_error(e)),
    };
    let Some(project_row) = projects.iter().find(|p| p.key == project) else {
        return error_page(
            Some(&viewer),
            &(axum::http::StatusCode::NOT_FOUND, "No such project.".into()),
        );
    };
    let now = time::OffsetDateTime::now_utc();
    let needle = query.q.trim().to_lowercase();
    let (status_env, status_on) = match query.status.split_once(':') {
        Some((e, s)) => (Some(e), s == "on"),
        None => (None, false),
    };
    let show_archived = query.archived.is_some();
    let want_stale = query.stale.is_some();
    let mut tags: Vec<&str> = flags
        .iter()
        .flat_map(|f| f.tags.iter().map(String::as_str))
        .collect();
    tags.sort_unstable();
    tags.dedup();
    let shown: Vec<&FlagDefinition> = flags
        .iter()
        .filter(|f| show_archived || !f.archived)
        .filter(|f| {
            needle.is_empty()
                || f.key.to_lowercase().contains(&needle)
                || f.name.to_lowercase().contains(&needle)
                || f.description.to_lowercase().contains(&needle)
        })
        .filter(|f| query.tag.is_empty() || f.tags.contains(&query.tag))
        .filter(|f| match status_env {
            Some(e) => f.settings_for(e).enabled == status_on,
            None => true,
        })
        .filter(|f| !want_stale || is_stale(f, &envs, now))
        .collect();
    let matching = shown.len();
    let pages = matching.div_ceil(PAGE_SIZE).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let first = (page - 1) * PAGE_SIZE;
    let shown = &shown[first..matching.min(first + PAGE_SIZE)];
    let page_link = |n: usize| {
        let q = ListQuery {
            q: query.q.clone(),
            tag: query.tag.clone(),
            status: query.status.clone(),
            stale: query.stale.clone(),
            archived: query.archived.clone(),
            page: Some(n),
        };
        format!(
            "/ui/p/{project}/flags?{}",
            serde_urlencoded::to_string(&q).unwrap_or_default()
        )
    };
    let can_edit = viewer.can_edit(&project);
    let body = html! {
        (layout::head(&[], "Flags", Some(html! { (project_row.name) " · " (flags.len()) " flags" }), html! {
            @if can_edit { a.button.primary href=(format!("/ui/p/{project}/flags/new")) { "New flag" } }
        }))
        form.filters method="get" role="search" aria-label="Filter flags" {
            div.field {
                label for="q" { "Search" }
                input #q type="search" name="q" value=(query.q) placeholder="key, name or description";
            }
            div.field {
                label for="tag" { "Tag" }
                select #tag name="tag" {
                    option value="" { "Any tag" }
                    @for t in &tags { option value=(t) selected[query.tag == *t] { (t) } }
                }
            }
            div.field {
                label for="status" { "Status" }
                select #status name="status" {
                    option value="" { "Any status" }
                    @for e in &envs {
                        @for (s, label) in [("on", "On"), ("off", "Off")] {
                            @let v = format!("{}:{s}", e.key);
                            option value=(v) selected[query.status == v] { (label) " in " (e.name) }
                        }
                    }
                }
            }
            div.field {
                label for="stale" { input #stale type="checkbox" name="stale" value="1" checked[want_stale]; " Stale only" }
                label for="archived" { input #archived type="checkbox" name="archived" value="1" checked[show_archived]; " Show archived" }
            }
            div.actions { button type="submit" { "Filter" } a href=(format!("/ui/p/{project}/flags")) { "Clear" } }
        }
        @if shown.is_empty() {
            div.panel.empty {
                @if flags.is_empty() { "No flags yet." } @else { "No flag matches these filters." }
            }
        } @else {
            div.table-wrap {
                table {
                    caption.visually-hidden { "Flags" }
                    thead { tr {
                        th scope="col" { "Flag" }
                        @for e in &envs { th scope="col" { (e.name) } }
                        th scope="col" .hide-narrow { "Last change" }
                    } }
                    tbody {
                        @for f in shown {
                            tr {
                                td {
                                    a href=(format!("/ui/p/{project}/flags/{}", f.key)) { strong { (f.name) } }
                                    div.small.mono.muted { (f.key) }
                                    div {
                                        @for t in &f.tags { span.tag { (t) } }
                                        @if f.archived { span.badge.off { "archived" } }
                                        @if is_stale(f, &envs, now) { span.badge.warn title="Unchanged for 30 days and serving one variation everywhere" { "stale" } }
                                    }
                                }
                                @for e in &envs { td { (status_cell(&project, f, e, can_edit)) } }
                                td.hide-narrow.small.muted { (layout::when(f.updated_at)) }
                            }
                        }
                    }
                }
            }
            nav.toolbar aria-label="Pages of flags" {
                p.small.muted {
                    "Showing " (first + 1) "–" (first + shown.len()) " of " (matching)
                    @if matching != flags.len() { " matching (" (flags.len()) " flags)" }
                    "."
                }
                @if pages > 1 {
                    div.actions {
                        @if page > 1 { a.button.small href=(page_link(page - 1)) rel="prev" { "Previous" } }
                        span.small { "Page " (page) " of " (pages) }
                        @if page < pages { a.button.small href=(page_link(page + 1)) rel="next" { "Next" } }
                    }
                }
            }
        }
    };
    layout::page(
        &viewer,
        &Frame {
            title: "Flags",
            project: Some(&project),
            nav: Nav::Flags,
            projects: &projects,
        },
        body,
    )
}
