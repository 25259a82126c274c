//! Metric definitions: the list, and one form to create or edit one
//! (`/api/v1/projects/{p}/metrics`, `docs/metrics.md`). The API validates;
//! its errors name the field, which the form shows beside it.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use switchyard_core::metric::{Aggregate, Cap, Direction, EventSource, MetricKind};
use switchyard_store::{Metric, Project};

use super::layout::{self, Frame, Nav, Viewer, error_page, field, store_error};
use super::results::kind_name;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/p/{project}/metrics", get(list))
        .route("/ui/p/{project}/metrics/new", get(new))
        .route("/ui/p/{project}/metrics/{key}", get(edit))
}

async fn projects(
    state: &AppState,
    viewer: &Viewer,
    project: &str,
) -> Result<Vec<Project>, Response> {
    let missing = || layout::not_found(viewer, layout::NO_PROJECT);
    if viewer.role_in(project).is_none() {
        return Err(missing());
    }
    let all = state
        .store
        .list_projects()
        .await
        .map_err(|e| error_page(Some(viewer), &store_error(e)))?;
    if all.iter().any(|p| p.key == project) {
        Ok(all)
    } else {
        Err(missing())
    }
}

fn source_text(s: &EventSource) -> String {
    let mut t = format!("“{}” events", s.event);
    if !s.conditions.is_empty() {
        t.push_str(&format!(
            " with {} condition{}",
            s.conditions.len(),
            if s.conditions.len() == 1 { "" } else { "s" }
        ));
    }
    t
}

async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(project): Path<String>,
) -> Response {
    let projects = match projects(&state, &viewer, &project).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let metrics = match state.store.list_metrics(&project).await {
        Ok(m) => m,
        Err(e) => return error_page(Some(&viewer), &store_error(e)),
    };
    let can_edit = viewer.can_edit(&project);
    let body = html! {
        (layout::head(&[], "Metrics", Some(html! { "What experiments measure · " (metrics.len()) " defined" }), html! {
            @if can_edit { a.button.primary href=(format!("/ui/p/{project}/metrics/new")) { "New metric" } }
        }))
        @if metrics.is_empty() {
            div.panel.empty { "No metric yet. A metric turns each unit's tracked events into a number experiments compare." }
        } @else {
            div.table-wrap {
                table {
                    caption.visually-hidden { "Metrics" }
                    thead { tr {
                        th scope="col" { "Metric" }
                        th scope="col" { "Kind" }
                        th scope="col" { "Reads" }
                        th scope="col" .hide-narrow { "Good news" }
                        th scope="col" .hide-narrow { "Last change" }
                    } }
                    tbody {
                        @for m in &metrics {
                            @let d = &m.definition;
                            tr {
                                td {
                                    a href=(format!("/ui/p/{project}/metrics/{}", d.key)) { strong { @if d.name.is_empty() { (d.key) } @else { (d.name) } } }
                                    div.small.mono.muted { (d.key) }
                                }
                                td { span.tag { (kind_name(d.kind)) } }
                                td.small {
                                    (source_text(&d.numerator))
                                    @if let Some(den) = &d.denominator { " over " (source_text(den)) }
                                    @if let Some(w) = d.window_hours { div.muted { "within " (w) " h of exposure" } }
                                }
                                td.hide-narrow.small { @if d.direction == Direction::Lower { "lower" } @else { "higher" } }
                                td.hide-narrow.small.muted { (layout::when(m.updated_at)) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page(
        &viewer,
        &Frame::in_project(Nav::Metrics, "Metrics", &project, &projects),
        body,
    )
}

async fn new(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(project): Path<String>,
) -> Response {
    let projects = match projects(&state, &viewer, &project).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !viewer.can_edit(&project) {
        return error_page(
            Some(&viewer),
            &(
                StatusCode::FORBIDDEN,
                "Your role in this project does not allow defining metrics.".into(),
            ),
        );
    }
    let body = html! {
        (layout::head(&[("Metrics", format!("/ui/p/{project}/metrics"))], "New metric", None, html! {}))
        (form(&project, None, true))
    };
    layout::page(
        &viewer,
        &Frame::in_project(Nav::Metrics, "New metric", &project, &projects),
        body,
    )
}

async fn edit(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
) -> Response {
    let projects = match projects(&state, &viewer, &project).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let metric = match state.store.get_metric(&project, &key).await {
        Ok(m) => m,
        Err(e) => return error_page(Some(&viewer), &store_error(e)),
    };
    let can_edit = viewer.can_edit(&project);
    let title = if metric.definition.name.is_empty() {
        metric.definition.key.clone()
    } else {
        metric.definition.name.clone()
    };
    let body = html! {
        (layout::head(&[("Metrics", format!("/ui/p/{project}/metrics"))], &title, Some(html! {
            span.mono { (metric.definition.key) } " · version " (metric.version) " · changed " (layout::when(metric.updated_at))
        }), html! {
            @if can_edit {
                button.danger type="button" data-call=(format!("/api/v1/projects/{project}/metrics/{key}")) data-method="DELETE"
                    data-etag=(metric.version) data-confirm="Delete this metric? Experiments that name it must drop it first."
                    data-then=(format!("/ui/p/{project}/metrics")) { "Delete" }
            }
        }))
        (form(&project, Some(&metric), can_edit))
    };
    layout::page(
        &viewer,
        &Frame::in_project(Nav::Metrics, &title, &project, &projects),
        body,
    )
}

fn conditions_json(s: Option<&EventSource>) -> String {
    match s {
        Some(s) if !s.conditions.is_empty() => {
            serde_json::to_string_pretty(&s.conditions).unwrap_or_default()
        }
        _ => String::new(),
    }
}

/// The event-source fields of the numerator or the denominator.
fn source(prefix: &str, label: &str, s: Option<&EventSource>, aggregate_hint: bool) -> Markup {
    html! {
        fieldset {
            legend { (label) }
            div.grid2 {
                (field(&format!("{prefix}-event"), "Event name", html! {
                    input id=(format!("{prefix}-event")) type="text" data-key="event" data-field=(format!("{prefix}.event")) value=(s.map_or("", |s| s.event.as_str())) placeholder="purchase";
                }, None))
                (field(&format!("{prefix}-aggregate"), "Per unit", html! {
                    select id=(format!("{prefix}-aggregate") ) data-key="aggregate" data-field=(format!("{prefix}.aggregate")) {
                        option value="count" selected[s.is_none_or(|s| s.aggregate == Aggregate::Count)] { "count the events" }
                        option value="sum" selected[s.is_some_and(|s| s.aggregate == Aggregate::Sum)] { "sum their value" }
                    }
                }, aggregate_hint.then_some("Ratio metrics only; the other kinds imply it.")))
            }
            (field(&format!("{prefix}-conditions"), "Conditions on the event's attributes (JSON, optional)", html! {
                textarea id=(format!("{prefix}-conditions")) data-key="conditions" data-type="json" data-optional="" data-field=(format!("{prefix}.conditions")) rows="2"
                    placeholder="[{\"attribute\": \"currency\", \"op\": \"in\", \"value\": [\"EUR\", \"USD\"]}]" { (conditions_json(s)) }
            }, None))
        }
    }
}

fn form(project: &str, metric: Option<&Metric>, can_edit: bool) -> Markup {
    let d = metric.map(|m| &m.definition);
    let kind = d.map_or(MetricKind::Binomial, |d| d.kind);
    let (cap_mode, cap_value) = match d.and_then(|d| d.cap) {
        Some(Cap::Fixed(x)) => ("fixed", x.to_string()),
        Some(Cap::Percentile(p)) => ("percentile", p.to_string()),
        None => ("none", String::new()),
    };
    let cuped = d.map(|d| d.cuped).unwrap_or_default();
    let (api, method) = match metric {
        Some(m) => (
            format!("/api/v1/projects/{project}/metrics/{}", m.definition.key),
            "PUT",
        ),
        None => (format!("/api/v1/projects/{project}/metrics"), "POST"),
    };
    let kinds = [
        (
            MetricKind::Binomial,
            "binomial: did the unit do it at least once",
        ),
        (MetricKind::Count, "count: how many times"),
        (MetricKind::Sum, "sum: the total of the events' value"),
        (MetricKind::Mean, "mean: the average value per event"),
        (MetricKind::Ratio, "ratio: one total over another"),
    ];
    html! {
        form.panel data-api=(api) data-method=(method) data-etag=[metric.map(|m| m.version)]
            data-then=(format!("/ui/p/{project}/metrics/{{key}}")) {
            div.form-alert hidden {}
            @if !can_edit { div.alert.info { "Your role lets you read this definition, not change it." } }
            fieldset disabled[!can_edit] {
                legend.visually-hidden { "Definition" }
                div.grid2 {
                    @if let Some(d) = d {
                        input type="hidden" data-key="key" value=(d.key);
                        (field("key", "Key", html! { input #key type="text" value=(d.key) readonly aria-describedby="key-hint"; }, Some("A metric's key never changes.")))
                    } @else {
                        (field("key", "Key", html! { input #key type="text" data-key="key" data-field="key" required placeholder="purchase"; }, Some("Lowercase letters, digits, . _ -")))
                    }
                    (field("name", "Name", html! { input #name type="text" data-key="name" data-field="name" value=(d.map_or("", |d| d.name.as_str())) placeholder="Purchase rate"; }, None))
                }
                (field("description", "Description", html! { textarea.prose #description data-key="description" data-field="description" rows="2" { (d.map_or("", |d| d.description.as_str())) } }, None))
                div.grid2 {
                    (field("kind", "Kind", html! {
                        select #kind data-key="kind" data-switch="kind" data-field="kind" {
                            @for (k, label) in kinds { option value=(kind_name(k)) selected[k == kind] { (label) } }
                        }
                    }, None))
                    (field("direction", "Good news is", html! {
                        select #direction data-key="direction" data-field="direction" {
                            option value="higher" selected[d.is_none_or(|d| d.direction == Direction::Higher)] { "higher" }
                            option value="lower" selected[d.is_some_and(|d| d.direction == Direction::Lower)] { "lower (errors, latency)" }
                        }
                    }, None))
                }
                div data-obj="numerator" { (source("numerator", "Events counted (numerator)", d.map(|d| &d.numerator), true)) }
                div data-when-kind="ratio" hidden[kind != MetricKind::Ratio] {
                    div data-obj="denominator" { (source("denominator", "Denominator", d.and_then(|d| d.denominator.as_ref()), false)) }
                }
                div.grid3 {
                    (field("window_hours", "Window (hours after exposure)", html! {
                        input #window_hours type="number" min="1" max="8784" step="1" data-key="window_hours" data-type="int" data-optional="" data-field="window_hours"
                            value=(d.and_then(|d| d.window_hours).map(|w| w.to_string()).unwrap_or_default()) placeholder="until it stops";
                    }, Some("Empty: events count until the experiment stops.")))
                    (field("cap-mode", "Cap on per-unit values", html! {
                        select #cap-mode data-switch="cap" {
                            option value="none" selected[cap_mode == "none"] { "none" }
                            option value="fixed" selected[cap_mode == "fixed"] { "a fixed value" }
                            option value="percentile" selected[cap_mode == "percentile"] { "a percentile" }
                        }
                    }, Some("Against outliers; not for binomial.")))
                    div {
                        div data-when-cap="fixed" hidden[cap_mode != "fixed"] {
                            div data-obj="cap" {
                                (field("cap-fixed", "Cap value", html! { input #cap-fixed type="number" step="any" min="0" data-key="fixed" data-type="number" data-field="cap" value=(if cap_mode == "fixed" { cap_value.as_str() } else { "" }); }, None))
                            }
                        }
                        div data-when-cap="percentile" hidden[cap_mode != "percentile"] {
                            div data-obj="cap" {
                                (field("cap-percentile", "Percentile (0 to 1)", html! { input #cap-percentile type="number" step="any" min="0" max="1" data-key="percentile" data-type="number" data-field="cap" value=(if cap_mode == "percentile" { cap_value.as_str() } else { "0.99" }); }, None))
                            }
                        }
                    }
                }
                fieldset data-obj="cuped" {
                    legend { "Variance reduction (CUPED)" }
                    div.inline {
                        div.field {
                            label for="cuped-enabled" { input #cuped-enabled type="checkbox" data-key="enabled" data-type="bool" checked[cuped.enabled]; " Use the same metric before exposure as covariate" }
                        }
                        (field("cuped-lookback", "Look back (hours)", html! { input #cuped-lookback type="number" min="1" step="1" data-key="lookback_hours" data-type="int" data-field="cuped.lookback_hours" value=(cuped.lookback_hours); }, None))
                    }
                }
                @if can_edit {
                    div.actions { button.primary type="submit" { @if metric.is_some() { "Save" } @else { "Create metric" } } }
                }
            }
        }
    }
}
