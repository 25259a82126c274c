//! Segments: the list (with the flags that use each) and the editor
//! (included and excluded keys, rules of conditions). Saves go through
//! the API (`PUT /api/v1/projects/{p}/segments/{key}` with `If-Match`).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use switchyard_core::model::{Condition, Operator};
use switchyard_store::{FlagDefinition, SegmentDefinition, StoreError};

use super::layout::{self, Frame, Nav, Viewer, error_page, field, not_found, store_error};
use super::rules::{condition_text, segment_rule_item};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/p/{project}/segments", get(list))
        .route("/ui/p/{project}/segments/new", get(new_segment))
        .route("/ui/p/{project}/segments/{key}", get(segment_page))
}

fn uses_segment(c: &Condition, segment: &str) -> bool {
    matches!(c.op, Operator::InSegment | Operator::NotInSegment)
        && c.value
            .as_array()
            .is_some_and(|keys| keys.iter().any(|k| k.as_str() == Some(segment)))
}

/// The keys of the flags whose rules name `segment` in some environment.
fn flags_using<'a>(flags: &'a [FlagDefinition], segment: &str) -> Vec<&'a str> {
    flags
        .iter()
        .filter(|f| {
            f.environments.values().any(|s| {
                s.rules
                    .iter()
                    .any(|r| r.conditions.iter().any(|c| uses_segment(c, segment)))
            })
        })
        .map(|f| f.key.as_str())
        .collect()
}

async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(project): Path<String>,
) -> Response {
    if let Some(page) = viewer.refused(&project) {
        return page;
    }
    let loaded = async {
        let projects = state.store.list_projects().await?;
        let segments = state.store.list_segments(&project).await?;
        let flags = state.ui.flags.flags(state.store.as_ref(), &project).await?;
        Ok::<_, StoreError>((projects, segments, flags))
    }
    .await;
    let (projects, segments, flags) = match loaded {
        Ok(x) => x,
        Err(e) => return error_page(Some(&viewer), &store_error(e)),
    };
    if !projects.iter().any(|p| p.key == project) {
        return not_found(&viewer, "No such project.");
    }
    let can_edit = viewer.can_edit(&project);
    let body = html! {
        (layout::head(&[], "Segments", Some(html! { "Reusable sets of units, for rules of any flag: " code { "is in segment" } }), html! {
            @if can_edit { a.button.primary href=(format!("/ui/p/{project}/segments/new")) { "New segment" } }
        }))
        @if segments.is_empty() {
            div.panel.empty { "No segments yet." }
        } @else {
            div.table-wrap {
                table {
                    caption.visually-hidden { "Segments" }
                    thead { tr {
                        th scope="col" { "Segment" }
                        th scope="col" { "Members" }
                        th scope="col" .hide-narrow { "Used by" }
                    } }
                    tbody {
                        @for s in &segments {
                            @let used = flags_using(&flags, &s.key);
                            tr {
                                td {
                                    a href=(format!("/ui/p/{project}/segments/{}", s.key)) { strong { (s.name) } }
                                    div.small.mono.muted { (s.key) }
                                    @if !s.description.is_empty() { div.small.muted { (s.description) } }
                                }
                                td.small {
                                    (s.included.len()) " included, " (s.excluded.len()) " excluded, "
                                    (s.rules.len()) " rule" @if s.rules.len() != 1 { "s" }
                                }
                                td.small.hide-narrow {
                                    @if used.is_empty() { span.muted { "no flag" } }
                                    @for (i, k) in used.iter().enumerate() {
                                        @if i > 0 { ", " }
                                        a.mono href=(format!("/ui/p/{project}/flags/{k}")) { (k) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page(
        &viewer,
        &Frame::in_project(Nav::Segments, "Segments", &project, &projects),
        body,
    )
}

fn form_fields(s: Option<&SegmentDefinition>) -> Markup {
    let rules = s.map(|s| s.rules.as_slice()).unwrap_or_default();
    html! {
        (field("description", "Description", html! { textarea #description data-key="description" rows="2" { (s.map_or("", |s| s.description.as_str())) } }, None))
        div.grid2 {
            (field("included", "Included keys", html! {
                textarea #included data-key="included" data-type="lines" rows="4" aria-describedby="included-hint" spellcheck="false" { (s.map(|s| s.included.join("\n")).unwrap_or_default()) }
            }, Some("Targeting keys always in the segment, one a line or separated by commas.")))
            (field("excluded", "Excluded keys", html! {
                textarea #excluded data-key="excluded" data-type="lines" rows="4" aria-describedby="excluded-hint" spellcheck="false" { (s.map(|s| s.excluded.join("\n")).unwrap_or_default()) }
            }, Some("Never in the segment, whatever the rules say.")))
        }
        h2 { "Rules" }
        p.small.muted { "A unit is in the segment when any rule holds for it (all of that rule's conditions)." }
        div data-repeat="" {
            div.rules data-list="rules" {
                div.field-error aria-live="polite" {}
                @for (i, r) in rules.iter().enumerate() { (segment_rule_item(&format!("sr{i}"), &r.conditions)) }
            }
            template { (segment_rule_item("sr__N__", &[])) }
            button type="button" data-add="" { "Add rule" }
        }
    }
}

async fn new_segment(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(project): Path<String>,
) -> Response {
    if let Some(page) = viewer.refused(&project) {
        return page;
    }
    let projects = match state.store.list_projects().await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&viewer), &store_error(e)),
    };
    if !projects.iter().any(|p| p.key == project) {
        return not_found(&viewer, "No such project.");
    }
    if !viewer.can_edit(&project) {
        return error_page(
            Some(&viewer),
            &(
                StatusCode::FORBIDDEN,
                "Your role in this project does not allow creating segments.".into(),
            ),
        );
    }
    let body = html! {
        (layout::head(&[("Segments", format!("/ui/p/{project}/segments"))], "New segment", None, html! {}))
        form.panel data-api=(format!("/api/v1/projects/{project}/segments")) data-method="POST" data-then=(format!("/ui/p/{project}/segments/{{key}}")) novalidate {
            div.grid2 {
                (field("name", "Name", html! { input #name type="text" data-key="name" required autocomplete="off"; }, None))
                (field("key", "Key", html! { input #key type="text" data-key="key" required autocomplete="off" spellcheck="false" aria-describedby="key-hint" placeholder="beta-testers"; }, Some("Used in rules: a-z, 0-9, '-', '_', '.'. It cannot change later.")))
            }
            (form_fields(None))
            div.form-alert hidden {}
            div.actions { button.primary type="submit" { "Create segment" } a href=(format!("/ui/p/{project}/segments")) { "Cancel" } }
        }
    };
    layout::page(
        &viewer,
        &Frame::in_project(Nav::Segments, "New segment", &project, &projects),
        body,
    )
}

async fn segment_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
) -> Response {
    if let Some(page) = viewer.refused(&project) {
        return page;
    }
    let loaded = async {
        let projects = state.store.list_projects().await?;
        let segment = state.store.get_segment(&project, &key).await?;
        let flags = state.ui.flags.flags(state.store.as_ref(), &project).await?;
        Ok::<_, StoreError>((projects, segment, flags))
    }
    .await;
    let (projects, s, flags) = match loaded {
        Ok(x) => x,
        Err(StoreError::NotFound { .. }) => {
            return not_found(
                &viewer,
                "No such segment in this project: it may have been deleted.",
            );
        }
        Err(e) => return error_page(Some(&viewer), &store_error(e)),
    };
    let can_edit = viewer.can_edit(&project);
    let used = flags_using(&flags, &s.key);
    let body = html! {
        (layout::head(
            &[("Segments", format!("/ui/p/{project}/segments"))],
            &s.name,
            Some(html! { span.mono { (s.key) } " · version " (s.version) }),
            html! { a.button href=(format!("/ui/audit?project={project}&resource_kind=segment&resource_key={}", s.key)) { "Audit log" } },
        ))
        @if can_edit {
            form #segment-form.panel data-api=(format!("/api/v1/projects/{project}/segments/{}", s.key)) data-method="PUT" data-etag=(s.version) data-then="reload" novalidate {
                input type="hidden" data-key="key" value=(s.key);
                (field("name", "Name", html! { input #name type="text" data-key="name" value=(s.name) required; }, None))
                (form_fields(Some(&s)))
                div.savebar {
                    div.form-alert hidden {}
                    div.actions {
                        button.primary type="submit" { "Save segment" }
                        a href=(format!("/ui/p/{project}/segments/{}", s.key)) { "Discard changes" }
                        @if used.is_empty() {
                            button.danger type="button" data-call=(format!("/api/v1/projects/{project}/segments/{}", s.key)) data-method="DELETE" data-etag=(s.version) data-confirm=(format!("Delete the segment {}?", s.key)) data-then=(format!("/ui/p/{project}/segments")) { "Delete" }
                        }
                    }
                }
            }
        } @else {
            section.panel {
                @if !s.description.is_empty() { p { (s.description) } }
                p { strong { "Included: " } @if s.included.is_empty() { span.muted { "none" } } (s.included.join(", ")) }
                p { strong { "Excluded: " } @if s.excluded.is_empty() { span.muted { "none" } } (s.excluded.join(", ")) }
                h2 { "Rules" }
                @if s.rules.is_empty() { p.muted { "No rules." } }
                ol {
                    @for r in &s.rules {
                        li {
                            @for (i, c) in r.conditions.iter().enumerate() {
                                @if i > 0 { " and " }
                                code { (condition_text(c)) }
                            }
                        }
                    }
                }
            }
        }
        (used_by(&project, &used))
    };
    layout::page(
        &viewer,
        &Frame::in_project(Nav::Segments, &s.name, &project, &projects),
        body,
    )
}

fn used_by(project: &str, used: &[&str]) -> Markup {
    html! {
        section.panel {
            h2 { "Used by" }
            @if used.is_empty() {
                p.muted { "No flag's rules use this segment." }
            } @else {
                ul { @for k in used { li { a.mono href=(format!("/ui/p/{project}/flags/{k}")) { (k) } } } }
            }
        }
    }
}
