//! Rejected events (`/ui/events/dead-letters`): the dead-letter store,
//! read as `GET /api/v1/events/dead-letters` reads it (same filter, same
//! pages with `from`/`next`), each letter with its reason and its raw
//! event; editors replay them (`POST /api/v1/events/dead-letters/replay`)
//! once the cause is fixed.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;
use switchyard_events::{DeadLetter, DeadLetterFilter};
use switchyard_store::Role;

use super::layout::{self, Frame, Nav, Viewer, error_page, store_error};
use crate::state::AppState;

/// Letters on one page.
const PAGE: usize = 50;

pub fn routes() -> Router<AppState> {
    Router::new().route("/ui/events/dead-letters", get(dead_letters))
}

#[derive(Debug, Default, Deserialize)]
pub struct LettersQuery {
    #[serde(default)]
    project: String,
    #[serde(default)]
    environment: String,
    /// Kept as text: a malformed cursor starts from the beginning.
    #[serde(default)]
    from: String,
    #[serde(default)]
    replayed: Option<String>,
    /// Set after a replay: how many were replayed.
    #[serde(default)]
    done: Option<String>,
}

fn at_text(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(layout::when)
        .unwrap_or_else(|_| ms.to_string())
}

/// The stored event, pretty when it is JSON (it is text: maud escapes it).
fn event_text(l: &DeadLetter) -> String {
    serde_json::from_str::<serde_json::Value>(l.event.get())
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| l.event.get().to_string())
}

fn letter(l: &DeadLetter) -> Markup {
    html! {
        article.item data-letter-id=(l.id) {
            div.item-head {
                div {
                    span.badge.bad { "Rejected" } " "
                    code { (l.reason.code) }
                    @if l.replayed { " " span.badge.good { "Replayed" } }
                }
                div.small.muted { (at_text(l.at)) }
            }
            p { (l.reason.message) @if let Some(f) = &l.reason.field { " " span.small.muted { "(field " code { (f) } ")" } } }
            div.small.muted {
                "#" (l.id) " · " span.mono { (l.project) " / " (l.environment) } " · event " (l.index + 1) " of its batch"
            }
            details {
                summary { "Raw event" @if let Some(size) = l.truncated { " (first bytes of " (size) ")" } }
                pre.diff { (event_text(l)) }
            }
        }
    }
}

fn link(project: &str, environment: &str, replayed: bool, from: Option<u64>) -> String {
    let mut parts = Vec::new();
    for (k, v) in [("project", project), ("environment", environment)] {
        if !v.is_empty() {
            parts.push(format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            ));
        }
    }
    if replayed {
        parts.push("replayed=1".into());
    }
    if let Some(f) = from {
        parts.push(format!("from={f}"));
    }
    if parts.is_empty() {
        "/ui/events/dead-letters".into()
    } else {
        format!("/ui/events/dead-letters?{}", parts.join("&"))
    }
}

async fn dead_letters(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<LettersQuery>,
) -> Response {
    let projects = match state.store.list_projects().await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&viewer), &store_error(e)),
    };
    // A person bound to a project sees its letters only (as the API).
    let project = match &viewer.user.project {
        Some(bound) => bound.clone(),
        None => q.project.trim().to_string(),
    };
    if !project.is_empty()
        && (viewer.role_in(&project).is_none() || !projects.iter().any(|p| p.key == project))
    {
        return layout::not_found(&viewer, layout::NO_PROJECT);
    }
    let environment = if project.is_empty() {
        String::new()
    } else {
        q.environment.trim().to_string()
    };
    let envs = if project.is_empty() {
        Vec::new()
    } else {
        match state.store.list_environments(&project).await {
            Ok(e) => e,
            Err(e) => return error_page(Some(&viewer), &store_error(e)),
        }
    };
    // An environment of another project (the project was changed in the
    // filter form): every environment of this one.
    let environment = if envs.iter().any(|e| e.key == environment) {
        environment
    } else {
        String::new()
    };
    let include_replayed = q.replayed.is_some();
    let from = q.from.trim().parse::<u64>().unwrap_or(0);
    let page = match &state.events {
        None => None,
        Some(events) => {
            let filter = DeadLetterFilter {
                project: (!project.is_empty()).then(|| project.clone()),
                environment: (!environment.is_empty()).then(|| environment.clone()),
                from,
                include_replayed,
            };
            match events.dead_letters(&filter, PAGE).await {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the dead-letter store");
                    return error_page(
                        Some(&viewer),
                        &(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "The rejected events could not be read just now; try again in a few seconds.".into(),
                        ),
                    );
                }
            }
        }
    };
    let can_replay = viewer.user.role >= Role::Editor;
    let visible = viewer.visible(&projects);
    let mut replay_body = serde_json::Map::new();
    if !project.is_empty() {
        replay_body.insert("project".into(), project.clone().into());
    }
    if !environment.is_empty() {
        replay_body.insert("environment".into(), environment.clone().into());
    }
    let replay_body = serde_json::Value::Object(replay_body).to_string();
    let scope = match (project.as_str(), environment.as_str()) {
        ("", _) => "every project".to_string(),
        (p, "") => p.to_string(),
        (p, e) => format!("{p} / {e}"),
    };
    let then = format!(
        "{}{}done={{replayed}}",
        link(&project, &environment, include_replayed, None),
        if project.is_empty() && environment.is_empty() && !include_replayed {
            "?"
        } else {
            "&"
        }
    );
    let body = html! {
        (layout::head(&[], "Rejected events",
            Some(html! { "Events the ingestion API refused, each with its reason. Fix the sender (or the configuration), then replay: those now valid join the event log." }),
            html! {
                @if can_replay && page.is_some() {
                    button.primary type="button" data-call="/api/v1/events/dead-letters/replay" data-method="POST"
                        data-body=(replay_body) data-then=(then)
                        data-confirm=(format!("Replay the rejected events of {scope}? Each is checked again with today's rules; those that pass are added to the event log (counted once), the others stay here with today's reason."))
                        { "Replay all of " (scope) }
                }
            }))
        @if let Some(n) = &q.done {
            div.alert.ok role="status" {
                strong { "Replay done: " (n) " event" @if n != "1" { "s" } " replayed." }
                " Events still invalid stay listed below with today's reason."
            }
        }
        form.filters method="get" role="search" aria-label="Filter rejected events" {
            div.field {
                label for="dl-project" { "Project" }
                select #dl-project name="project" {
                    @if viewer.user.project.is_none() { option value="" { "Every project" } }
                    @for p in &visible { option value=(p.key) selected[project == p.key] { (p.name) } }
                }
            }
            div.field {
                label for="dl-environment" { "Environment" }
                select #dl-environment name="environment" {
                    option value="" { "Every environment" }
                    @for e in &envs { option value=(e.key) selected[environment == e.key] { (e.name) } }
                }
            }
            div.field {
                label for="dl-replayed" { input #dl-replayed type="checkbox" name="replayed" value="1" checked[include_replayed]; " Show replayed ones too" }
            }
            div.actions { button type="submit" { "Filter" } a href="/ui/events/dead-letters" { "Clear" } }
        }
        @match &page {
            None => div.alert.info role="status" { "Event ingestion is not configured on this server, so there are no rejected events." },
            Some(page) => {
                @if from > 0 {
                    p.small { a href=(link(&project, &environment, include_replayed, None)) { "← From the oldest" } }
                }
                @if page.dead_letters.is_empty() {
                    div.panel.empty {
                        @if page.next.is_some() { "None in this stretch of the log; there may be more further on." }
                        @else { "No rejected events." }
                    }
                } @else {
                    div #letters { @for l in &page.dead_letters { (letter(l)) } }
                }
                @if let Some(next) = page.next {
                    p { a.button href=(link(&project, &environment, include_replayed, Some(next))) { "Next page →" } }
                }
            }
        }
    };
    layout::page(
        &viewer,
        &Frame {
            title: "Rejected events",
            project: (!project.is_empty()).then_some(project.as_str()),
            nav: Nav::DeadLetters,
            projects: &projects,
        },
        body,
    )
}
