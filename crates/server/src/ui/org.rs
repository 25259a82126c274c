//! The organisation: projects with their environments (`/ui/projects`) and
//! API keys (`/ui/keys`). Pages read the store; every change is a call to
//! the JSON API from the browser (`app.js`), so it is validated, checked
//! against the version the page was rendered with, and audited as the
//! signed-in person.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use switchyard_store::{ApiKey, ApiKeyKind, Environment, Project, Role, StoreError};

use super::layout::{self, Frame, Nav, Viewer, error_page, field, store_error};
use crate::auth::role_name;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/projects", get(projects))
        .route("/ui/keys", get(keys))
}

/// The alert box a form's errors go to.
pub fn form_alert() -> Markup {
    html! { div.form-alert hidden {} }
}

fn frame<'a>(title: &'a str, nav: Nav, projects: &'a [Project]) -> Frame<'a> {
    Frame {
        title,
        project: None,
        nav,
        projects,
    }
}

// ---- Projects and environments ----------------------------------------------

async fn projects(State(state): State<AppState>, viewer: Viewer) -> Response {
    let loaded = async {
        let projects = state.store.list_projects().await?;
        let mut envs = Vec::new();
        for p in viewer.visible(&projects) {
            envs.push(state.store.list_environments(&p.key).await?);
        }
        Ok::<_, StoreError>((projects, envs))
    }
    .await;
    let (projects, envs) = match loaded {
        Ok(x) => x,
        Err(e) => return error_page(Some(&viewer), &store_error(e)),
    };
    let visible = viewer.visible(&projects);
    let body = html! {
        (layout::head(&[], "Projects & environments",
            Some(html! { (visible.len()) " project" @if visible.len() != 1 { "s" } " you can see" }),
            html! {}))
        @if viewer.is_org_admin() {
            details.panel #new-project {
                summary { "New project" }
                form data-api="/api/v1/projects" data-method="POST" data-then="reload" {
                    (form_alert())
                    div.grid2 {
                        (field("project-name", "Name", html! {
                            input #project-name type="text" data-key="name" data-field="name" required maxlength="200" autocomplete="off";
                        }, None))
                        (field("project-key", "Key", html! {
                            input #project-key type="text" data-key="key" data-field="key" required maxlength="64" pattern="[a-z0-9][a-z0-9_.\\-]*" autocomplete="off" aria-describedby="project-key-hint";
                        }, Some("Used in URLs and by SDKs; lowercase letters, digits, '_', '-', '.'. It never changes.")))
                    }
                    button.primary type="submit" { "Create project" }
                }
            }
        }
        @if visible.is_empty() {
            div.panel.empty { "You have no role in any project yet. Ask an organisation admin." }
        }
        @for (p, envs) in visible.iter().zip(&envs) {
            (project_panel(&viewer, p, envs))
        }
    };
    layout::page(
        &viewer,
        &frame("Projects & environments", Nav::Projects, &projects),
        body,
    )
}

fn project_panel(viewer: &Viewer, p: &Project, envs: &[Environment]) -> Markup {
    let k = &p.key;
    let can_admin = viewer.can_admin(k);
    let can_edit = viewer.can_edit(k);
    html! {
        section.panel id=(format!("project-{k}")) aria-labelledby=(format!("project-{k}-title")) {
            div.toolbar {
                div {
                    h2 id=(format!("project-{k}-title")) style="margin:0" { (p.name) }
                    div.small.muted { span.mono { (k) } " · created " (layout::when(p.created_at)) }
                }
                div.actions {
                    a.button.small href=(format!("/ui/p/{k}/flags")) { "Open flags" }
                    @if can_admin {
                        button.small.danger type="button"
                            data-call=(format!("/api/v1/projects/{k}")) data-method="DELETE" data-etag=(p.version)
                            data-confirm=(format!("Delete the project \"{}\" ({k}) with everything in it: its environments, flags, segments, experiments, metrics and the API keys bound to it? SDKs using it stop getting configuration. This cannot be undone.", p.name))
                            { "Delete project" }
                    }
                }
            }
            @if can_admin {
                details {
                    summary { "Rename project" }
                    form.inline data-api=(format!("/api/v1/projects/{k}")) data-method="PATCH" data-etag=(p.version) data-then="reload" {
                        (form_alert())
                        (field(&format!("rename-{k}"), "New name", html! {
                            input id=(format!("rename-{k}")) type="text" data-key="name" data-field="name" value=(p.name) required maxlength="200";
                        }, None))
                        div.field { button type="submit" { "Save name" } }
                    }
                }
            }
            h3 { "Environments" }
            @if envs.is_empty() {
                p.muted { "No environments yet." }
            } @else {
                div.table-wrap {
                    table {
                        caption.visually-hidden { "Environments of " (p.name) }
                        thead { tr {
                            th scope="col" { "Environment" }
                            @if can_edit { th scope="col" { span.visually-hidden { "Actions" } } }
                        } }
                        tbody {
                            @for e in envs {
                                tr {
                                    td { (e.name) div.small.muted.mono { (e.key) } }
                                    @if can_edit {
                                        td {
                                            details {
                                                summary { "Rename or delete" }
                                                form.inline data-api=(format!("/api/v1/projects/{k}/environments/{}", e.key)) data-method="PATCH" data-etag=(e.version) data-then="reload" {
                                                    (form_alert())
                                                    @let id = format!("env-name-{k}-{}", e.key);
                                                    (field(&id, "New name", html! {
                                                        input id=(id) type="text" data-key="name" data-field="name" value=(e.name) required maxlength="200";
                                                    }, None))
                                                    div.field.actions {
                                                        button type="submit" { "Save name" }
                                                        button.danger type="button"
                                                            data-call=(format!("/api/v1/projects/{k}/environments/{}", e.key)) data-method="DELETE" data-etag=(e.version)
                                                            data-confirm=(format!("Delete the environment \"{}\" of {}? Its flag settings, experiments, holdouts and the API keys bound to it are deleted; SDKs using it stop getting configuration. This cannot be undone.", e.name, p.name))
                                                            { "Delete environment" }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if can_edit {
                form.inline style="margin-top:0.8rem" data-api=(format!("/api/v1/projects/{k}/environments")) data-method="POST" data-then="reload" aria-label=(format!("New environment in {}", p.name)) {
                    (form_alert())
                    @let name_id = format!("new-env-name-{k}");
                    @let key_id = format!("new-env-key-{k}");
                    (field(&name_id, "New environment name", html! {
                        input id=(name_id) type="text" data-key="name" data-field="name" required maxlength="200" placeholder="Staging" autocomplete="off";
                    }, None))
                    (field(&key_id, "Key", html! {
                        input id=(key_id) type="text" data-key="key" data-field="key" required maxlength="64" placeholder="staging" autocomplete="off";
                    }, None))
                    div.field { button.primary type="submit" { "Add environment" } }
                }
            }
        }
    }
}

// ---- API keys ---------------------------------------------------------------

/// Whether the viewer may manage keys at all (the API's rule: an admin,
/// of every project or of theirs).
fn manages_keys(viewer: &Viewer) -> bool {
    viewer.user.role >= Role::Admin
}

fn kind_text(kind: ApiKeyKind) -> String {
    match kind {
        ApiKeyKind::Admin(r) => format!("admin · {}", role_name(r)),
        ApiKeyKind::Server => "server SDK".into(),
        ApiKeyKind::Client => "client SDK".into(),
    }
}

fn scope_text(k: &ApiKey) -> String {
    match (&k.project, &k.environment) {
        (None, _) => "every project".into(),
        (Some(p), None) => p.clone(),
        (Some(p), Some(e)) => format!("{p} / {e}"),
    }
}

async fn keys(State(state): State<AppState>, viewer: Viewer) -> Response {
    let loaded = async {
        let projects = state.store.list_projects().await?;
        let keys = if manages_keys(&viewer) {
            state.store.list_api_keys().await?
        } else {
            Vec::new()
        };
        let mut envs = Vec::new();
        if manages_keys(&viewer) {
            for p in viewer.visible(&projects) {
                envs.push(state.store.list_environments(&p.key).await?);
            }
        }
        Ok::<_, StoreError>((projects, keys, envs))
    }
    .await;
    let (projects, mut keys, envs) = match loaded {
        Ok(x) => x,
        Err(e) => return error_page(Some(&viewer), &store_error(e)),
    };
    if !manages_keys(&viewer) {
        let body = html! {
            (layout::head(&[], "API keys", None, html! {}))
            div.alert.info role="status" {
                strong { "Only admins see and manage API keys." }
                " Ask an admin of your organisation for a key for your service."
            }
        };
        return layout::page(&viewer, &frame("API keys", Nav::Keys, &projects), body);
    }
    let bound = viewer.user.project.clone();
    keys.retain(|k| bound.is_none() || k.project == bound);
    // Live keys first, then newest first.
    keys.sort_by(|a, b| {
        a.revoked_at
            .is_some()
            .cmp(&b.revoked_at.is_some())
            .then(b.created_at.cmp(&a.created_at))
    });
    let visible = viewer.visible(&projects);
    let live = keys.iter().filter(|k| k.revoked_at.is_none()).count();
    let body = html! {
        (layout::head(&[], "API keys",
            Some(html! { (live) " active, " (keys.len() - live) " revoked" }),
            html! {}))
        div #secret .alert.ok hidden role="status" {
            strong { "Your new key. Copy it now: it is shown only this once." }
            p.small { "Store it in your secret manager or the service's configuration. Switchyard keeps only a hash and cannot show it again; if it is lost, create a new key and revoke this one." }
            div.secret tabindex="0" aria-label="The new key's secret" {}
            div.actions style="margin-top:0.6rem" {
                button type="button" data-copy="#secret .secret" { "Copy to clipboard" }
                a href="/ui/keys" { "Done: show the key list" }
            }
        }
        details.panel #new-key {
            summary { "New API key" }
            (new_key_form(&viewer, &visible, &envs))
        }
        @if keys.is_empty() {
            div.panel.empty { "No API keys yet." }
        } @else {
            div.table-wrap {
                table #keys {
                    caption.visually-hidden { "API keys" }
                    thead { tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Kind" }
                        th scope="col" { "Project / environment" }
                        th scope="col" .hide-narrow { "Prefix" }
                        th scope="col" .hide-narrow { "Created" }
                        th scope="col" { "Status" }
                    } }
                    tbody {
                        @for k in &keys {
                            tr data-key-id=(k.id) {
                                td { strong { (k.name) } div.small.muted.mono { (k.id) } }
                                td { (kind_text(k.kind)) }
                                td { (scope_text(k)) }
                                td.mono.hide-narrow { (k.prefix) "…" }
                                td.small.hide-narrow { (layout::when(k.created_at)) }
                                td {
                                    @if let Some(at) = k.revoked_at {
                                        span.badge.off { "Revoked" }
                                        div.small.muted { (layout::when(at)) }
                                    } @else {
                                        span.badge.on { "Active" }
                                        " "
                                        button.small.danger type="button"
                                            data-call=(format!("/api/v1/api-keys/{}", k.id)) data-method="DELETE"
                                            data-confirm=(format!("Revoke the key \"{}\" ({})? Every program using it is refused from now on. This cannot be undone.", k.name, k.prefix))
                                            { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page(&viewer, &frame("API keys", Nav::Keys, &projects), body)
}

/// The create form. The key's `kind` is `"server"`, `"client"` or
/// `{"admin": ROLE}`: a switch shows either the role (read as the `kind`
/// object) or a hidden `kind` string; the environment list shown is the
/// chosen project's.
fn new_key_form(viewer: &Viewer, visible: &[&Project], envs: &[Vec<Environment>]) -> Markup {
    let bound = viewer.user.project.as_deref();
    html! {
        form data-api="/api/v1/api-keys" data-method="POST" data-then="secret" {
            (form_alert())
            div.grid2 {
                (field("key-name", "Name", html! {
                    input #key-name type="text" data-key="name" data-field="name" required maxlength="200" placeholder="checkout-service production" autocomplete="off";
                }, Some("Who or what uses it, so you know what breaks if you revoke it.")))
                (field("key-kind", "Kind", html! {
                    select #key-kind data-switch="kind" aria-describedby="key-kind-hint" {
                        option value="server" { "Server SDK: reads one environment's configuration" }
                        option value="client" { "Client SDK: evaluates flags in one environment (safe in browsers and apps)" }
                        option value="admin" { "Admin: the control API with a role" }
                    }
                }, Some("SDK keys are bound to one environment; admin keys to one project or to all.")))
            }
            input type="hidden" data-key="kind" value="server" data-when-kind="server";
            input type="hidden" data-key="kind" value="client" data-when-kind="client";
            div.grid2 {
                // The switch shows what is in its own scope: the object
                // sits inside the element it shows.
                div data-when-kind="admin" {
                    div data-obj="kind" {
                        (field("key-role", "Role", html! {
                            select #key-role data-key="admin" data-field="kind" {
                                option value="viewer" { "Viewer: reads" }
                                option value="editor" { "Editor: changes flags, segments, experiments" }
                                option value="admin" { "Admin: also projects, environments, keys" }
                            }
                        }, None))
                    }
                }
                (field("key-project", "Project", html! {
                    select #key-project data-key="project" data-field="project" data-optional data-switch="proj" {
                        @if bound.is_none() { option value="" { "Every project (admin keys only)" } }
                        @for p in visible {
                            option value=(p.key) selected[bound == Some(p.key.as_str())] { (p.name) " (" (p.key) ")" }
                        }
                    }
                }, None))
                div data-when-kind="server client" {
                    @for (p, list) in visible.iter().zip(envs) {
                        @let id = format!("key-env-{}", p.key);
                        div data-when-proj=(p.key) {
                            (field(&id, "Environment", html! {
                                select id=(id) data-key="environment" data-field="environment" {
                                    @for e in list { option value=(e.key) { (e.name) " (" (e.key) ")" } }
                                }
                            }, None))
                        }
                    }
                    @if bound.is_none() {
                        p.small.muted data-when-proj="" { "Choose a project, then its environment." }
                    }
                }
            }
            button.primary type="submit" { "Create key" }
        }
    }
}
