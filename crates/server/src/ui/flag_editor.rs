//! The flag page: its status and a quick on/off per environment, the
//! editor (details, variations, metadata, and the targeting of every
//! environment), its recent changes; and the page that creates a flag.
//!
//! The editor saves with one `PUT /api/v1/projects/{p}/flags/{key}` of the
//! whole flag, with the version the page was rendered at in `If-Match`; a
//! change saved by someone else in between is refused (412) and the form
//! keeps what was typed. People who may not change the flag get a
//! read-only page.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;
use switchyard_core::model::{FlagType, Prerequisite, Variation};
use switchyard_store::{
    AuditEntry, AuditFilter, Environment, FlagDefinition, FlagEnvironment, Project, StoreError,
};

use super::layout::{self, Frame, Nav, Viewer, error_page, field, not_found, store_error};
use super::rules::{
    condition_text, rules_block, scalar_text, serve_block, serve_text, variation_label,
};
use crate::state::AppState;

/// How many audit entries the flag page shows.
const RECENT_CHANGES: u32 = 6;

/// `/ui/p/{project}/flags/new`
pub async fn new_flag(
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
                "Your role in this project does not allow creating flags.".into(),
            ),
        );
    }
    let defaults = [
        Variation {
            key: "on".into(),
            value: Value::Bool(true),
        },
        Variation {
            key: "off".into(),
            value: Value::Bool(false),
        },
    ];
    let body = html! {
        (layout::head(&[("Flags", format!("/ui/p/{project}/flags"))], "New flag", Some(html! { "Every environment starts off; set up targeting after creating it." }), html! {}))
        form.panel data-api=(format!("/api/v1/projects/{project}/flags")) data-method="POST" data-then=(format!("/ui/p/{project}/flags/{{key}}")) {
            div.grid2 {
                (field("name", "Name", html! { input #name type="text" data-key="name" required autocomplete="off"; }, None))
                (field("key", "Key", html! { input #key type="text" data-key="key" required autocomplete="off" spellcheck="false" aria-describedby="key-hint" placeholder="new-checkout"; }, Some("What code asks for: a-z, 0-9, '-', '_', '.'. It cannot change later.")))
            }
            (field("description", "Description", html! { textarea #description data-key="description" data-type="string" rows="2" {} }, None))
            div.grid2 {
                (field("type", "Type", html! {
                    select #type data-key="type" data-switch="type" data-switch-deep="" {
                        @for t in [FlagType::Boolean, FlagType::String, FlagType::Number, FlagType::Json] {
                            option value=(t.as_str()) { (type_label(t)) }
                        }
                    }
                }, None))
                (field("tags", "Tags", html! { input #tags type="text" data-key="tags" data-type="lines" aria-describedby="tags-hint" autocomplete="off"; }, Some("Separated by commas.")))
            }
            h2 { "Variations" }
            (variations_block(None, &defaults))
            div.form-alert hidden {}
            div.actions { button.primary type="submit" { "Create flag" } a href=(format!("/ui/p/{project}/flags")) { "Cancel" } }
        }
    };
    layout::page(
        &viewer,
        &Frame::in_project(Nav::Flags, "New flag", &project, &projects),
        body,
    )
}

fn type_label(t: FlagType) -> &'static str {
    match t {
        FlagType::Boolean => "Boolean",
        FlagType::String => "String",
        FlagType::Number => "Number",
        FlagType::Json => "JSON (object or array)",
    }
}

/// The value control of a variation for a flag of type `t`.
fn value_control(id: &str, t: FlagType, value: Option<&Value>) -> Markup {
    let label = html! { label for=(id) { "Value" } };
    let control = match t {
        FlagType::Boolean => {
            let on = value.and_then(Value::as_bool).unwrap_or(false);
            html! {
                select #(id) data-key="value" data-type="bool" {
                    option value="true" selected[on] { "true" }
                    option value="false" selected[!on] { "false" }
                }
            }
        }
        FlagType::String => html! {
            input #(id) type="text" data-key="value" value=(value.and_then(Value::as_str).unwrap_or_default());
        },
        FlagType::Number => html! {
            input #(id) type="text" inputmode="decimal" data-key="value" data-type="number" value=(value.filter(|v| v.is_number()).map(Value::to_string).unwrap_or_default());
        },
        FlagType::Json => {
            let text = value
                .filter(|v| v.is_object() || v.is_array())
                .and_then(|v| serde_json::to_string_pretty(v).ok())
                .unwrap_or_else(|| "{}".into());
            html! { textarea.short #(id) data-key="value" data-type="json" rows="3" { (text) } }
        }
    };
    html! { div.field.grow { (label) (control) div.field-error aria-live="polite" {} } }
}

/// One variation. `fixed`: the flag's type (the editor), or `None` for
/// the create page, which offers a control per type, switched by the type.
fn variation_item(id: &str, fixed: Option<FlagType>, v: Option<&Variation>) -> Markup {
    html! {
        div.item.variation data-item="" {
            div.cond-row {
                div.field {
                    label for=(format!("{id}-key")) { "Key" }
                    input #(format!("{id}-key")) type="text" data-key="key" value=(v.map_or("", |v| v.key.as_str())) spellcheck="false" autocomplete="off";
                    div.field-error aria-live="polite" {}
                }
                @match fixed {
                    Some(t) => (value_control(&format!("{id}-value"), t, v.map(|v| &v.value))),
                    None => {
                        @for t in [FlagType::Boolean, FlagType::String, FlagType::Number, FlagType::Json] {
                            div.grow data-when-type=(t.as_str()) hidden[t != FlagType::Boolean] {
                                (value_control(&format!("{id}-value-{}", t.as_str()), t, v.map(|v| &v.value)))
                            }
                        }
                    }
                }
                div.cond-remove { button.small type="button" data-remove="" aria-label="Remove this variation" { "Remove" } }
            }
        }
    }
}

fn variations_block(fixed: Option<FlagType>, variations: &[Variation]) -> Markup {
    html! {
        div data-repeat="" {
            div data-list="variations" {
                div.field-error aria-live="polite" {}
                @for (i, v) in variations.iter().enumerate() {
                    (variation_item(&format!("var{i}"), fixed, Some(v)))
                }
            }
            template { (variation_item("var__N__", fixed, None)) }
            button.small type="button" data-add="" { "Add variation" }
        }
    }
}

fn metadata_item(id: &str, entry: Option<(&String, &Value)>) -> Markup {
    html! {
        div.item data-item="" {
            div.cond-row {
                div.field {
                    label for=(format!("{id}-k")) { "Name" }
                    input #(format!("{id}-k")) type="text" data-key="k" value=(entry.map_or("", |(k, _)| k.as_str())) autocomplete="off";
                    div.field-error aria-live="polite" {}
                }
                div.field.grow {
                    label for=(format!("{id}-v")) { "Value" }
                    input #(format!("{id}-v")) type="text" data-key="v" data-type="json-or-string" value=(entry.map(|(_, v)| scalar_text(v)).unwrap_or_default());
                    div.field-error aria-live="polite" {}
                }
                div.cond-remove { button.small type="button" data-remove="" aria-label="Remove this entry" { "Remove" } }
            }
        }
    }
}

/// Everything the flag page shows, read in a few store calls.
struct Loaded {
    projects: Vec<Project>,
    envs: Vec<Environment>,
    flag: FlagDefinition,
    /// The other flags of the project (for prerequisites).
    others: Vec<String>,
    segments: Vec<String>,
    /// Per environment (in `envs` order), the experiments on this flag.
    experiments: Vec<Vec<String>>,
    audit: Vec<AuditEntry>,
}

async fn load(state: &AppState, project: &str, key: &str) -> Result<Loaded, StoreError> {
    let projects = state.store.list_projects().await?;
    let envs = state.store.list_environments(project).await?;
    let flag = state.store.get_flag(project, key).await?;
    let mut others: Vec<String> = state
        .ui
        .flags
        .flags(state.store.as_ref(), project)
        .await?
        .iter()
        .filter(|f| f.key != key)
        .map(|f| f.key.clone())
        .collect();
    others.sort_unstable();
    let segments = state
        .store
        .list_segments(project)
        .await?
        .into_iter()
        .map(|s| s.key)
        .collect();
    let mut experiments = Vec::with_capacity(envs.len());
    for e in &envs {
        experiments.push(
            state
                .store
                .list_experiments(project, &e.key)
                .await?
                .into_iter()
                .filter(|x| x.flag == key)
                .map(|x| x.key)
                .collect(),
        );
    }
    let audit = state
        .store
        .list_audit(AuditFilter {
            project: Some(project.to_string()),
            resource_kind: Some("flag".into()),
            resource_key: Some(key.to_string()),
            limit: Some(RECENT_CHANGES),
            before_id: None,
        })
        .await?;
    Ok(Loaded {
        projects,
        envs,
        flag,
        others,
        segments,
        experiments,
        audit,
    })
}

/// `/ui/p/{project}/flags/{key}`
pub async fn flag_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((project, key)): Path<(String, String)>,
) -> Response {
    if let Some(page) = viewer.refused(&project) {
        return page;
    }
    let l = match load(&state, &project, &key).await {
        Ok(l) => l,
        Err(StoreError::NotFound { .. }) => {
            return not_found(
                &viewer,
                "No such flag in this project: it may have been deleted.",
            );
        }
        Err(e) => return error_page(Some(&viewer), &store_error(e)),
    };
    let f = &l.flag;
    let can_edit = viewer.can_edit(&project);
    let audit_href = format!("/ui/audit?project={project}&resource_kind=flag&resource_key={key}");
    let body = html! {
        (layout::head(
            &[("Flags", format!("/ui/p/{project}/flags"))],
            &f.name,
            Some(html! {
                span.mono { (f.key) } " · " (type_label(f.flag_type)) " · version " (f.version)
                @if f.archived { " · " span.badge.off { "archived" } }
            }),
            html! { a.button href=(audit_href) { "Audit log" } },
        ))
        @if !f.description.is_empty() { p { (f.description) } }
        (status_panel(&project, f, &l.envs, can_edit))
        @if can_edit { (editor(&project, &l)) } @else { (read_only(&l)) }
        (recent_changes(&l.audit, &audit_href))
    };
    layout::page(
        &viewer,
        &Frame::in_project(Nav::Flags, &f.name, &project, &l.projects),
        body,
    )
}

/// On/off per environment, with the quick switch for editors.
fn status_panel(project: &str, f: &FlagDefinition, envs: &[Environment], can_edit: bool) -> Markup {
    html! {
        section.panel aria-labelledby="status-h" {
            h2 #status-h { "Status" }
            div.table-wrap {
                table {
                    thead { tr {
                        th scope="col" { "Environment" }
                        th scope="col" { "Status" }
                        th scope="col" { "Serves" }
                        @if can_edit { th scope="col" { span.visually-hidden { "Switch" } } }
                    } }
                    tbody {
                        @for e in envs {
                            @let s = f.settings_for(&e.key);
                            tr {
                                th scope="row" { a href=(format!("#env-{}", e.key)) { (e.name) } }
                                td { @if s.enabled { span.badge.on { "On" } } @else { span.badge.off { "Off" } } }
                                td.small { (summary(&s)) }
                                @if can_edit {
                                    td { (switch_button(project, &f.key, e, s.enabled, f.version)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The quick on/off switch of a flag in one environment (the kill-switch
/// `PATCH` with the flag's version).
pub fn switch_button(
    project: &str,
    flag: &str,
    env: &Environment,
    on: bool,
    version: i64,
) -> Markup {
    let url = format!(
        "/api/v1/projects/{project}/flags/{flag}/environments/{}",
        env.key
    );
    html! {
        @if on {
            button.small.danger type="button" data-call=(url) data-method="PATCH" data-body=r#"{"enabled":false}"# data-etag=(version) aria-label=(format!("Turn {flag} off in {}", env.name)) { "Turn off" }
        } @else {
            button.small type="button" data-call=(url) data-method="PATCH" data-body=r#"{"enabled":true}"# data-etag=(version) aria-label=(format!("Turn {flag} on in {}", env.name)) { "Turn on" }
        }
    }
}

/// What the flag does in an environment, in a few words.
fn summary(s: &FlagEnvironment) -> String {
    if !s.enabled {
        return format!("off: serves {}", s.off_variation);
    }
    let mut parts = Vec::new();
    if !s.prerequisites.is_empty() {
        parts.push(format!("{} prerequisite(s)", s.prerequisites.len()));
    }
    if !s.rules.is_empty() {
        parts.push(format!(
            "{} rule{}",
            s.rules.len(),
            if s.rules.len() == 1 { "" } else { "s" }
        ));
    }
    parts.push(format!("otherwise {}", serve_text(&s.fallthrough)));
    parts.join(", ")
}

fn editor(project: &str, l: &Loaded) -> Markup {
    let f = &l.flag;
    html! {
        form #flag-form data-api=(format!("/api/v1/projects/{project}/flags/{}", f.key)) data-method="PUT" data-etag=(f.version) data-then="reload" novalidate {
            input type="hidden" data-key="key" value=(f.key);
            input type="hidden" data-key="type" value=(f.flag_type.as_str());
            section.panel aria-labelledby="details-h" {
                h2 #details-h { "Details" }
                div.grid2 {
                    (field("name", "Name", html! { input #name type="text" data-key="name" value=(f.name) required; }, None))
                    (field("tags", "Tags", html! { input #tags type="text" data-key="tags" data-type="lines" value=(f.tags.join(", ")) aria-describedby="tags-hint"; }, Some("Separated by commas.")))
                }
                (field("description", "Description", html! { textarea #description data-key="description" rows="2" { (f.description) } }, None))
                div.field {
                    label for="archived" { input #archived type="checkbox" data-key="archived" data-type="bool" checked[f.archived]; " Archived" }
                    div.hint { "An archived flag leaves every environment's configuration: SDKs get their default value." }
                }
            }
            section.panel aria-labelledby="variations-h" {
                h2 #variations-h { "Variations" }
                (variations_block(Some(f.flag_type), &f.variations))
                p.small.muted { "A new variation can be chosen in the targeting below after saving." }
            }
            section.panel aria-labelledby="metadata-h" {
                h2 #metadata-h { "Metadata" }
                p.small.muted { "Returned with every evaluation: text, numbers or true/false." }
                div data-repeat="" {
                    div data-map="metadata" {
                        div.field-error aria-live="polite" {}
                        @for (i, entry) in f.metadata.iter().enumerate() { (metadata_item(&format!("meta{i}"), Some(entry))) }
                    }
                    template { (metadata_item("meta__N__", None)) }
                    button.small type="button" data-add="" { "Add entry" }
                }
            }
            @if l.envs.len() > 1 {
                nav.env-tabs aria-label="Environments" {
                    "Targeting in: "
                    @for e in &l.envs { a href=(format!("#env-{}", e.key)) { (e.name) } }
                }
            }
            div data-obj="environments" {
                @for (i, e) in l.envs.iter().enumerate() {
                    (environment_section(e, f, &l.others, &l.segments, l.experiments.get(i).map_or(&[][..], Vec::as_slice)))
                }
            }
            div.savebar {
                div.form-alert hidden {}
                div.actions {
                    button.primary type="submit" { "Save flag" }
                    a href=(format!("/ui/p/{project}/flags/{}", f.key)) { "Discard changes" }
                }
            }
        }
    }
}

fn prerequisite_item(id: &str, p: Option<&Prerequisite>, others: &[String]) -> Markup {
    let chosen = p.map_or("", |p| p.flag.as_str());
    html! {
        div.item data-item="" {
            div.cond-row {
                div.field {
                    label for=(format!("{id}-flag")) { "Flag" }
                    select #(format!("{id}-flag")) data-key="flag" {
                        @for o in others { option value=(o) selected[o == chosen] { (o) } }
                        @if !chosen.is_empty() && !others.iter().any(|o| o == chosen) { option value=(chosen) selected { (chosen) } }
                    }
                    div.field-error aria-live="polite" {}
                }
                div.field.grow {
                    label for=(format!("{id}-vars")) { "Is one of the variations" }
                    input #(format!("{id}-vars")) type="text" data-key="variations" data-type="lines" value=(p.map(|p| p.variations.join(", ")).unwrap_or_default()) placeholder="on";
                    div.field-error aria-live="polite" {}
                }
                div.cond-remove { button.small type="button" data-remove="" aria-label="Remove this prerequisite" { "Remove" } }
            }
        }
    }
}

fn environment_section(
    e: &Environment,
    f: &FlagDefinition,
    others: &[String],
    segments: &[String],
    experiments: &[String],
) -> Markup {
    let s = f.settings_for(&e.key);
    let id = format!("e-{}", e.key);
    html! {
        section.panel.env id=(format!("env-{}", e.key)) data-obj=(e.key) aria-labelledby=(format!("{id}-h")) {
            div.item-head {
                h2 id=(format!("{id}-h")) { "Targeting in " (e.name) }
                @if s.enabled { span.badge.on { "On" } } @else { span.badge.off { "Off" } }
            }
            div.grid2 {
                div.field {
                    label for=(format!("{id}-on")) { input #(format!("{id}-on")) type="checkbox" data-key="enabled" data-type="bool" checked[s.enabled]; " On in " (e.name) }
                    div.hint { "Off serves the off variation to everyone." }
                }
                (field(&format!("{id}-offvar"), "Off variation", html! {
                    select #(format!("{id}-offvar")) data-key="off_variation" {
                        @for v in &f.variations { option value=(v.key) selected[v.key == s.off_variation] { (variation_label(v)) } }
                        @if !f.variations.iter().any(|v| v.key == s.off_variation) { option value=(s.off_variation) selected { (s.off_variation) " (no such variation)" } }
                    }
                }, None))
            }
            h3 { "Prerequisites" }
            div data-repeat="" {
                div data-list="prerequisites" {
                    div.field-error aria-live="polite" {}
                    @for (i, p) in s.prerequisites.iter().enumerate() { (prerequisite_item(&format!("{id}-p{i}"), Some(p), others)) }
                }
                template { (prerequisite_item(&format!("{id}-p__N__"), None, others)) }
                @if others.is_empty() { p.small.muted { "No other flags to depend on." } }
                @else { button.small type="button" data-add="" { "Add prerequisite" } }
            }
            h3 { "Rules" }
            p.small.muted { "Tried in order; the first rule whose conditions all hold serves." }
            (rules_block(&id, &s.rules, &f.variations, experiments, segments))
            h3 { "Everyone else" }
            (serve_block(&format!("{id}-ft"), "fallthrough", &s.fallthrough, &f.variations, experiments))
        }
    }
}

/// The flag for someone who may not change it.
fn read_only(l: &Loaded) -> Markup {
    let f = &l.flag;
    html! {
        section.panel {
            h2 { "Variations" }
            ul { @for v in &f.variations { li { span.mono { (v.key) } " = " code { (v.value) } } } }
            @if !f.tags.is_empty() { p { "Tags: " @for t in &f.tags { span.tag { (t) } } } }
            @if !f.metadata.is_empty() {
                h3 { "Metadata" }
                ul { @for (k, v) in &f.metadata { li { (k) ": " code { (v) } } } }
            }
        }
        @for e in &l.envs {
            @let s = f.settings_for(&e.key);
            section.panel id=(format!("env-{}", e.key)) {
                div.item-head {
                    h2 { "Targeting in " (e.name) }
                    @if s.enabled { span.badge.on { "On" } } @else { span.badge.off { "Off" } }
                }
                p { "Off variation: " span.mono { (s.off_variation) } }
                @if !s.prerequisites.is_empty() {
                    h3 { "Prerequisites" }
                    ul { @for p in &s.prerequisites { li { span.mono { (p.flag) } " is one of " (p.variations.join(", ")) } } }
                }
                @if !s.rules.is_empty() {
                    h3 { "Rules" }
                    ol {
                        @for r in &s.rules {
                            li {
                                @if r.conditions.is_empty() { "Everyone" }
                                @for (i, c) in r.conditions.iter().enumerate() {
                                    @if i > 0 { " and " }
                                    code { (condition_text(c)) }
                                }
                                " → " (serve_text(&r.serve))
                            }
                        }
                    }
                }
                p { "Everyone else: " (serve_text(&s.fallthrough)) }
            }
        }
    }
}

fn recent_changes(audit: &[AuditEntry], href: &str) -> Markup {
    html! {
        section.panel aria-labelledby="changes-h" {
            h2 #changes-h { "Recent changes" }
            @if audit.is_empty() {
                p.muted { "No recorded changes." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } } }
                        tbody {
                            @for a in audit {
                                tr { td.small { (layout::when(a.at)) } td.small { (a.actor) } td.small { (a.action) } }
                            }
                        }
                    }
                }
            }
            p { a href=(href) { "All changes of this flag in the audit log" } }
        }
    }
}
