//! Experiments: the list per environment, the create form, and an
//! experiment's page (its design, the lifecycle controls, its results).
//!
//! Experiments live in one environment (`/api/v1/projects/{p}/environments/{env}/experiments`).
//! Every change is a call of that API from the page (`app.js`), with the
//! version the page was rendered from as `If-Match`: start, pause, resume,
//! stop (with or without a winner), ship, restart, edits (name, hypothesis,
//! coverage ramps, breakdown) and deleting a draft.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;
use switchyard_core::metric::MetricRole;
use switchyard_core::model::{ExperimentStatus, Serve};
use switchyard_store::{Environment, ExperimentDefinition, FlagDefinition, Metric, Project};

use super::layout::{self, Frame, Nav, Viewer, error_page, field, not_found, store_error};
use super::results::{self, role_name};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/p/{project}/experiments", get(list))
        .route("/ui/p/{project}/experiments/new", get(new))
        .route("/ui/p/{project}/experiments/{env}/{key}", get(detail))
        .merge(results::routes())
}

#[derive(Debug, Default, Deserialize)]
pub struct EnvQuery {
    #[serde(default)]
    env: String,
    #[serde(default)]
    flag: String,
}

/// The projects (for the frame), this one, and its environments; or the
/// error page.
async fn project_and_envs(
    state: &AppState,
    viewer: &Viewer,
    project: &str,
) -> Result<(Vec<Project>, Vec<Environment>), Response> {
    if let Some(page) = viewer.refused(project) {
        return Err(page);
    }
    let (projects, envs) = tokio::join!(
        state.store.list_projects(),
        state.store.list_environments(project)
    );
    let projects = projects.map_err(|e| error_page(Some(viewer), &store_error(e)))?;
    if !projects.iter().any(|p| p.key == project) {
        return Err(not_found(viewer, "No such project."));
    }
    let envs = envs.map_err(|e| error_page(Some(viewer), &store_error(e)))?;
    Ok((projects, envs))
}

/// The environment asked for, else the first.
fn pick<'a>(envs: &'a [Environment], asked: &str) -> Option<&'a Environment> {
    envs.iter()
        .find(|e| e.key == asked)
        .or_else(|| envs.first())
}

pub fn status_badge(e: &ExperimentDefinition) -> Markup {
    html! {
        @match e.status {
            ExperimentStatus::Draft => span.badge.off { "Draft" },
            ExperimentStatus::Running => span.badge.good { "Running" },
            ExperimentStatus::Paused => span.badge.warn { "Paused" },
            ExperimentStatus::Stopped => @if let Some(w) = &e.winner {
                span.badge.info { "Shipped: " (w) }
            } @else {
                span.badge.off { "Stopped" }
            },
        }
    }
}

fn pct(bp: u32) -> String {
    let v = f64::from(bp) / 100.0;
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn env_tabs(project: &str, envs: &[Environment], current: &str) -> Markup {
    html! {
        nav.tabs aria-label="Environment" {
            @for e in envs {
                a href=(format!("/ui/p/{project}/experiments?env={}", e.key)) aria-current=[(e.key == current).then_some("page")] { (e.name) }
            }
        }
    }
}

async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(project): Path<String>,
    Query(query): Query<EnvQuery>,
) -> Response {
    let (projects, envs) = match project_and_envs(&state, &viewer, &project).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(env) = pick(&envs, &query.env) else {
        return not_found(&viewer, "This project has no environment yet.");
    };
    let experiments = match state.store.list_experiments(&project, &env.key).await {
        Ok(x) => x,
        Err(e) => return error_page(Some(&viewer), &store_error(e)),
    };
    let units = |e: &ExperimentDefinition| -> Option<u64> {
        if e.status == ExperimentStatus::Draft {
            return None;
        }
        let opts = switchyard_aggregate::AnalysisOptions {
            max_points: 1,
            breakdown: false,
            weights: e.variations.iter().map(|v| f64::from(v.weight)).collect(),
            ..Default::default()
        };
        let r = state
            .aggregation
            .as_ref()?
            .results(&project, &env.key, &e.key, &opts)
            .ok()??;
        Some(r.variations.iter().map(|v| v.units).sum())
    };
    let project_name = projects
        .iter()
        .find(|p| p.key == project)
        .map_or(project.as_str(), |p| p.name.as_str());
    let can_edit = viewer.can_edit(&project);
    let body = html! {
        (layout::head(&[], "Experiments", Some(html! { (project_name) " · " (env.name) " · " (experiments.len()) " experiment" @if experiments.len() != 1 { "s" } }), html! {
            @if can_edit { a.button.primary href=(format!("/ui/p/{project}/experiments/new?env={}", env.key)) { "New experiment" } }
        }))
        (env_tabs(&project, &envs, &env.key))
        @if experiments.is_empty() {
            div.panel.empty {
                "No experiment in " (env.name) " yet."
                @if can_edit { " " a href=(format!("/ui/p/{project}/experiments/new?env={}", env.key)) { "Create one" } " on a flag." }
            }
        } @else {
            div.table-wrap {
                table {
                    caption.visually-hidden { "Experiments in " (env.name) }
                    thead { tr {
                        th scope="col" { "Experiment" }
                        th scope="col" { "Status" }
                        th scope="col" { "Flag" }
                        th scope="col" .hide-narrow { "Variations" }
                        th scope="col" .hide-narrow { "Started" }
                        th scope="col" .num { "Units" }
                    } }
                    tbody {
                        @for e in &experiments {
                            tr {
                                td {
                                    a href=(format!("/ui/p/{project}/experiments/{}/{}", env.key, e.key)) { strong { (e.name) } }
                                    div.small.mono.muted { (e.key) }
                                }
                                td { (status_badge(e)) @if e.phase > 0 { div.small.muted { "phase " (e.phase + 1) } } }
                                td.mono.small { (e.flag) }
                                td.hide-narrow.small {
                                    @for (i, v) in e.variations.iter().enumerate() {
                                        @if i > 0 { ", " }
                                        (v.variation) " " span.muted { (pct(v.weight)) "%" }
                                    }
                                    @if e.coverage < 10_000 { div.muted { (pct(e.coverage)) "% of traffic" } }
                                }
                                td.hide-narrow.small.muted { (e.started_at.map(layout::when).unwrap_or_else(|| "not started".into())) }
                                td.num { (units(e).map_or("—".to_string(), |u| u.to_string())) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page(
        &viewer,
        &Frame::in_project(Nav::Experiments, "Experiments", &project, &projects),
        body,
    )
}

async fn new(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(project): Path<String>,
    Query(query): Query<EnvQuery>,
) -> Response {
    let (projects, envs) = match project_and_envs(&state, &viewer, &project).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !viewer.can_edit(&project) {
        return error_page(
            Some(&viewer),
            &(
                StatusCode::FORBIDDEN,
                "Your role in this project does not allow creating experiments.".into(),
            ),
        );
    }
    let Some(env) = pick(&envs, &query.env) else {
        return not_found(&viewer, "This project has no environment yet.");
    };
    let (flags, metrics) = tokio::join!(
        state.ui.flags.flags(state.store.as_ref(), &project),
        state.store.list_metrics(&project)
    );
    let (flags, metrics) = match flags.and_then(|f| Ok((f, metrics?))) {
        Ok(x) => x,
        Err(e) => return error_page(Some(&viewer), &store_error(e)),
    };
    let flags: Vec<FlagDefinition> = flags.iter().filter(|f| !f.archived).cloned().collect();
    let flag = flags
        .iter()
        .find(|f| f.key == query.flag)
        .or_else(|| flags.first());
    let list_url = format!("/ui/p/{project}/experiments?env={}", env.key);
    let body = html! {
        (layout::head(&[("Experiments", list_url.clone())], "New experiment", Some(html! { "in " (env.name) }), html! {}))
        form.panel.filters method="get" action=(format!("/ui/p/{project}/experiments/new")) aria-label="Environment and flag" {
            div.field {
                label for="pick-env" { "Environment" }
                select #pick-env name="env" {
                    @for e in &envs { option value=(e.key) selected[e.key == env.key] { (e.name) } }
                }
            }
            div.field {
                label for="pick-flag" { "Flag" }
                select #pick-flag name="flag" {
                    @for f in &flags { option value=(f.key) selected[flag.is_some_and(|x| x.key == f.key)] { (f.name) " (" (f.key) ")" } }
                }
            }
            div.actions { button type="submit" { "Use this flag" } }
        }
        @match flag {
            None => div.panel.empty { "This project has no flag yet: an experiment runs on a flag. Create the flag first." },
            Some(flag) => (create_form(&project, env, flag, &metrics)),
        }
    };
    layout::page(
        &viewer,
        &Frame::in_project(Nav::Experiments, "New experiment", &project, &projects),
        body,
    )
}

fn variation_item(flag: &FlagDefinition, chosen: &str, weight: u32, n: &str) -> Markup {
    html! {
        div.item.inline data-item="" {
            (field(&format!("var-{n}"), "Variation", html! {
                select id=(format!("var-{n}")) data-key="variation" {
                    @for v in &flag.variations { option value=(v.key) selected[v.key == chosen] { (v.key) } }
                }
            }, None))
            (field(&format!("weight-{n}"), "Weight (%)", html! {
                input id=(format!("weight-{n}")) type="number" min="0" max="100" step="0.01" data-key="weight" data-type="percent" value=(pct(weight));
            }, None))
            div.actions { button.small type="button" data-remove="" aria-label="Remove this variation" { "Remove" } }
        }
    }
}

fn metric_item(metrics: &[Metric], chosen: &str, role: MetricRole, n: &str) -> Markup {
    html! {
        div.item.inline data-item="" {
            (field(&format!("metric-{n}"), "Metric", html! {
                select id=(format!("metric-{n}")) data-key="metric" {
                    @for m in metrics {
                        option value=(m.definition.key) selected[m.definition.key == chosen] {
                            @if m.definition.name.is_empty() { (m.definition.key) } @else { (m.definition.name) " (" (m.definition.key) ")" }
                        }
                    }
                }
            }, None))
            (field(&format!("role-{n}"), "Role", html! {
                select id=(format!("role-{n}")) data-key="role" {
                    @for r in [MetricRole::Goal, MetricRole::Secondary, MetricRole::Guardrail] {
                        option value=(role_name(r)) selected[r == role] { (role_name(r)) }
                    }
                }
            }, None))
            div.actions { button.small type="button" data-remove="" aria-label="Remove this metric" { "Remove" } }
        }
    }
}

fn create_form(
    project: &str,
    env: &Environment,
    flag: &FlagDefinition,
    metrics: &[Metric],
) -> Markup {
    let n = flag.variations.len().max(1) as u32;
    let each = 10_000 / n;
    let first = 10_000 - each * (n - 1);
    // The control first: what the flag serves when off in this environment.
    let off = flag.settings_for(&env.key).off_variation;
    let mut ordered: Vec<&str> = flag.variations.iter().map(|v| v.key.as_str()).collect();
    ordered.sort_by_key(|k| *k != off);
    html! {
        form.panel data-api=(format!("/api/v1/projects/{project}/environments/{}/experiments", env.key))
            data-method="POST" data-then="/ui/p/{project}/experiments/{environment}/{key}" {
            div.form-alert hidden {}
            input type="hidden" data-key="flag" value=(flag.key);
            p.small.muted {
                "On flag " strong { (flag.name) } " (" code { (flag.key) } "). Units take part where this flag, in "
                (env.name) ", serves the experiment: a rule or the fallthrough set in the flag's editor. Until then it gets no traffic."
            }
            div.grid2 {
                (field("key", "Key", html! { input #key type="text" data-key="key" data-field="key" required pattern="[a-z0-9][a-z0-9_.\\-]{0,63}" aria-describedby="key-hint" placeholder="checkout-test"; }, Some("Lowercase letters, digits, . _ -; never changes.")))
                (field("name", "Name", html! { input #name type="text" data-key="name" data-field="name" required placeholder="One-page checkout"; }, None))
            }
            (field("hypothesis", "Hypothesis", html! { textarea.prose #hypothesis data-key="hypothesis" data-field="hypothesis" rows="2" placeholder="A one-page checkout raises the purchase rate" {} }, None))
            fieldset {
                legend { "Variations and weights" }
                div data-repeat="" {
                    div.field {
                        div data-list="variations" data-field="variations" {
                            @for (i, v) in ordered.iter().enumerate() {
                                (variation_item(flag, v, if i == 0 { first } else { each }, &i.to_string()))
                            }
                        }
                        div.field-error aria-live="polite" {}
                    }
                    template { (variation_item(flag, "", 0, "__N__")) }
                    button.small type="button" data-add="" { "Add a variation" }
                }
                p.small.muted { "The first variation is the control every other is compared with. Weights add up to 100 %." }
            }
            div.grid2 {
                (field("coverage", "Traffic in the experiment (%)", html! { input #coverage type="number" min="0" max="100" step="0.01" data-key="coverage" data-type="percent" data-field="coverage" value="100"; }, Some("Raise it later without moving anyone between variations.")))
                (field("bucket_by", "Unit (context attribute)", html! { input #bucket_by type="text" data-key="bucket_by" data-field="bucket_by" value="targetingKey"; }, Some("What is randomised: targetingKey is the user.")))
            }
            fieldset {
                legend { "Metrics" }
                @if metrics.is_empty() {
                    p.muted { "This project defines no metric yet; " a href=(format!("/ui/p/{project}/metrics/new")) { "define one" } " to measure the experiment." }
                }
                div data-repeat="" {
                    div.field {
                        div data-list="metrics" data-field="metrics" {
                            @if let Some(m) = metrics.first() { (metric_item(metrics, &m.definition.key, MetricRole::Goal, "0")) }
                        }
                        div.field-error aria-live="polite" {}
                    }
                    template { (metric_item(metrics, "", MetricRole::Secondary, "__N__")) }
                    @if !metrics.is_empty() { button.small type="button" data-add="" { "Add a metric" } }
                }
                div data-obj="guardrails" {
                    label for="auto_stop" { input #auto_stop type="checkbox" data-key="auto_stop" data-type="bool"; " Stop the experiment and serve the control when a guardrail metric is harmed" }
                }
            }
            details {
                summary { "Targeting, layer and breakdown" }
                (field("conditions", "Targeting conditions (JSON)", html! { textarea #conditions data-key="conditions" data-type="json" data-optional="" data-field="conditions" rows="3" placeholder="[{\"attribute\": \"country\", \"op\": \"in\", \"value\": [\"DE\", \"FR\"]}]" {} }, Some("Optional: only units whose context matches all of them take part.")))
                (field("breakdown_by", "Break results down by", html! { input #breakdown_by type="text" data-key="breakdown_by" data-optional="" data-field="breakdown_by" placeholder="country"; }, Some("Optional: an exposure attribute.")))
                (field("layer-mode", "Mutual exclusion", html! {
                    select #layer-mode data-switch="layer" {
                        option value="none" { "None" }
                        option value="yes" { "In a layer (a range of its buckets)" }
                    }
                }, None))
                div data-when-layer="yes" hidden {
                    div.grid3 data-obj="layer" {
                        (field("layer-key", "Layer key", html! { input #layer-key type="text" data-key="key" data-field="layer.key"; }, None))
                        (field("layer-start", "From (%)", html! { input #layer-start type="number" min="0" max="100" step="0.01" data-key="start" data-type="percent" data-field="layer.start" value="0"; }, None))
                        (field("layer-end", "To (%)", html! { input #layer-end type="number" min="0" max="100" step="0.01" data-key="end" data-type="percent" data-field="layer.end" value="100"; }, None))
                    }
                }
            }
            div.field {
                label for="start" { input #start type="checkbox" data-key="start" data-type="bool"; " Start now (otherwise it is saved as a draft)" }
            }
            div.actions { button.primary type="submit" { "Create experiment" } }
        }
    }
}

async fn detail(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((project, env, key)): Path<(String, String, String)>,
    view: Result<axum::extract::Query<results::View>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let view = view.map(|q| q.0).unwrap_or_default();
    let (projects, envs) = match project_and_envs(&state, &viewer, &project).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(environment) = envs.iter().find(|e| e.key == env) else {
        return not_found(&viewer, "No such environment in this project.");
    };
    let (experiment, metrics, alerts) = tokio::join!(
        state.store.get_experiment(&project, &env, &key),
        state.store.list_metrics(&project),
        state.store.list_experiment_alerts(&project, &env, &key),
    );
    let (e, metrics, alerts) = match experiment.and_then(|e| Ok((e, metrics?, alerts?))) {
        Ok(x) => x,
        Err(err) => return error_page(Some(&viewer), &store_error(err)),
    };
    // Whether the flag hands units to the experiment here (a missing flag
    // is reported, not fatal).
    let routed = match state.store.get_flag(&project, &e.flag).await {
        Ok(flag) => {
            let s = flag.settings_for(&env);
            let serves = |serve: &Serve| matches!(serve, Serve::Experiment(k) if *k == e.key);
            Some(s.enabled && (serves(&s.fallthrough) || s.rules.iter().any(|r| serves(&r.serve))))
        }
        Err(_) => None,
    };
    let results = results::section(&state, &e, &metrics, &alerts, &view).await;
    let analysis =
        results::settings_form(&format!("/ui/p/{project}/experiments/{env}/{key}"), &view);
    let can_edit = viewer.can_edit(&project);
    let list_url = format!("/ui/p/{project}/experiments?env={env}");
    let names = |k: &str| {
        metrics
            .iter()
            .find(|m| m.definition.key == k && !m.definition.name.is_empty())
            .map_or(k.to_string(), |m| m.definition.name.clone())
    };
    let design = html! {
        section.panel.design aria-labelledby="design-h" {
            h2 #design-h { "Design" }
            @if !e.hypothesis.is_empty() { p { strong { "Hypothesis: " } (e.hypothesis) } }
            dl.facts {
                dt { "Flag" } dd { a.mono href=(format!("/ui/p/{project}/flags/{}", e.flag)) { (e.flag) } }
                dt { "Variations" } dd {
                    @for (i, v) in e.variations.iter().enumerate() {
                        @if i > 0 { ", " }
                        (v.variation) " " span.muted { (pct(v.weight)) "%" }
                        @if i == 0 { " " span.tag { "control" } }
                    }
                }
                dt { "Traffic" } dd { (pct(e.coverage)) "% · unit " code { (e.bucket_by) } }
                @if let Some(l) = &e.layer { dt { "Layer" } dd { code { (l.key) } " " (pct(l.start)) "–" (pct(l.end)) "%" } }
                @if !e.conditions.is_empty() { dt { "Targeting" } dd { (e.conditions.len()) " condition" @if e.conditions.len() != 1 { "s" } } }
                dt { "Metrics" } dd {
                    @if e.metrics.is_empty() { span.muted { "none" } }
                    @for (i, m) in e.metrics.iter().enumerate() {
                        @if i > 0 { ", " }
                        (names(&m.metric)) " " span.muted { "(" (role_name(m.role)) ")" }
                    }
                    @if e.guardrails.auto_stop { div.small.muted { "Stops by itself when a guardrail is harmed." } }
                }
                @if let Some(b) = &e.breakdown_by { dt { "Breakdown" } dd { code { (b) } } }
                dt { "Phase" } dd {
                    (e.phase + 1)
                    @if let Some(t) = e.started_at { " · started " (layout::when(t)) }
                    @if let Some(t) = e.stopped_at { " · stopped " (layout::when(t)) }
                }
            }
        }
    };
    let body = html! {
        (layout::head(&[("Experiments", list_url)], &e.name, Some(html! {
            span.mono { (e.key) } " · " (environment.name) " · " (status_badge(&e))
        }), html! {
            @if can_edit { (quick_actions(&e)) }
        }))
        @if routed == Some(false) && matches!(e.status, ExperimentStatus::Running) {
            div.alert.warn role="status" {
                strong { "No traffic reaches this experiment." }
                "The flag " code { (e.flag) } " in " (environment.name) " is off or has no rule or fallthrough serving experiment " code { (e.key) } ": change the flag to send units here."
            }
        } @else if routed.is_none() {
            div.alert.warn role="status" { strong { "The flag " code { (e.flag) } " was not found." } }
        }
        @if e.status == ExperimentStatus::Draft {
            (design)
            @if can_edit { (manage(&e)) }
            (results)
        } @else {
            (analysis)
            (results)
            (design)
            @if can_edit { (manage(&e)) }
        }
    };
    layout::page(
        &viewer,
        &Frame::in_project(Nav::Experiments, &e.name, &project, &projects),
        body,
    )
}

fn api_url(e: &ExperimentDefinition) -> String {
    format!(
        "/api/v1/projects/{}/environments/{}/experiments/{}",
        e.project, e.environment, e.key
    )
}

/// The one-click steps, beside the title.
fn quick_actions(e: &ExperimentDefinition) -> Markup {
    let api = api_url(e);
    html! {
        @match e.status {
            ExperimentStatus::Draft => {
                button.primary type="button" data-call=(format!("{api}/start")) data-etag=(e.version) { "Start" }
                button.danger type="button" data-call=(api) data-method="DELETE" data-etag=(e.version)
                    data-confirm="Delete this draft?" data-then=(format!("/ui/p/{}/experiments?env={}", e.project, e.environment)) { "Delete draft" }
            }
            ExperimentStatus::Running => {
                button type="button" data-call=(format!("{api}/pause")) data-etag=(e.version) { "Pause" }
            }
            ExperimentStatus::Paused => {
                button.primary type="button" data-call=(format!("{api}/resume")) data-etag=(e.version) { "Resume" }
            }
            ExperimentStatus::Stopped => {}
        }
    }
}

/// Stop, ship, restart and edit: each a small form of its own.
fn manage(e: &ExperimentDefinition) -> Markup {
    let api = api_url(e);
    let started = e.status != ExperimentStatus::Draft;
    let open = matches!(
        e.status,
        ExperimentStatus::Running | ExperimentStatus::Paused
    );
    html! {
        section.panel.manage aria-labelledby="manage-h" {
            h2 #manage-h { @if started { "Decide" } @else { "Change the draft" } }
            div.grid3 {
                @if open {
                    form data-api=(format!("{api}/stop")) data-method="POST" data-etag=(e.version)
                        data-confirm="Stop the experiment? Units stop being assigned; results stay readable." {
                        h3 { "Stop" }
                        div.form-alert hidden {}
                        (field("stop-winner", "Serve afterwards", html! {
                            select #stop-winner data-key="winner" data-optional="" data-field="winner" {
                                option value="" { "no winner: the flag's usual value" }
                                @for v in &e.variations { option value=(v.variation) { (v.variation) " to everyone in it" } }
                            }
                        }, None))
                        button.danger type="submit" { "Stop experiment" }
                    }
                }
                @if started {
                    form data-api=(format!("{api}/ship")) data-method="POST" data-etag=(e.version)
                        data-confirm="Ship this variation to everyone who reaches the experiment?" {
                        h3 { "Ship a variation" }
                        div.form-alert hidden {}
                        (field("ship-variation", "Variation", html! {
                            select #ship-variation data-key="variation" data-field="variation" {
                                @for (i, v) in e.variations.iter().enumerate() {
                                    option value=(v.variation) selected[i == 1 || (e.variations.len() == 1)] { (v.variation) }
                                }
                            }
                        }, Some("Stops it (if it runs) and serves this to everyone in it.")))
                        button.primary type="submit" { "Ship" }
                    }
                    form data-api=(format!("{api}/restart")) data-method="POST" data-etag=(e.version)
                        data-confirm="Restart as a new phase? Its results start again from empty." {
                        h3 { "Restart" }
                        div.form-alert hidden {}
                        div.field {
                            label for="reshuffle" { input #reshuffle type="checkbox" data-key="reshuffle" data-type="bool"; " Re-randomise every unit" }
                            div.hint { "A new phase (" (e.phase + 2) ") with fresh results; the earlier phases' results are kept apart." }
                        }
                        button type="submit" { "Restart as phase " (e.phase + 2) }
                    }
                }
            }
            @if e.status != ExperimentStatus::Stopped { (edit_form(e)) }
        }
    }
}

/// Name, hypothesis, coverage and breakdown (what a running experiment may
/// change); the rest of the definition rides along unchanged.
fn edit_form(e: &ExperimentDefinition) -> Markup {
    let json = |v: serde_json::Result<String>| v.unwrap_or_else(|_| "null".into());
    html! {
        details.edit {
            summary { "Edit name, hypothesis, traffic or breakdown" }
            form data-api=(api_url(e)) data-method="PUT" data-etag=(e.version) {
                div.form-alert hidden {}
                input type="hidden" data-key="flag" value=(e.flag);
                input type="hidden" data-key="variations" data-type="json" value=(json(serde_json::to_string(&e.variations)));
                input type="hidden" data-key="bucket_by" value=(e.bucket_by);
                input type="hidden" data-key="conditions" data-type="json" value=(json(serde_json::to_string(&e.conditions)));
                input type="hidden" data-key="layer" data-type="json" value=(json(serde_json::to_string(&e.layer)));
                input type="hidden" data-key="holdouts" data-type="json" value=(json(serde_json::to_string(&e.holdouts)));
                input type="hidden" data-key="metrics" data-type="json" value=(json(serde_json::to_string(&e.metrics)));
                input type="hidden" data-key="guardrails" data-type="json" value=(json(serde_json::to_string(&e.guardrails)));
                div.grid2 {
                    (field("edit-name", "Name", html! { input #edit-name type="text" data-key="name" data-field="name" value=(e.name); }, None))
                    (field("edit-coverage", "Traffic in the experiment (%)", html! {
                        input #edit-coverage type="number" min="0" max="100" step="0.01" data-key="coverage" data-type="percent" data-field="coverage" value=(pct(e.coverage));
                    }, Some("Raising it keeps every unit in its variation.")))
                }
                (field("edit-hypothesis", "Hypothesis", html! { textarea.prose #edit-hypothesis data-key="hypothesis" data-field="hypothesis" rows="2" { (e.hypothesis) } }, None))
                (field("edit-breakdown", "Break results down by", html! {
                    input #edit-breakdown type="text" data-key="breakdown_by" data-optional="" data-field="breakdown_by" value=(e.breakdown_by.as_deref().unwrap_or(""));
                }, None))
                button.primary type="submit" { "Save" }
            }
        }
    }
}
