//! People (`/ui/users`): who signs in to the web UI, with their role and
//! project; organisation admins add people with an initial password and
//! disable them, through `/api/v1/users`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use maud::html;
use switchyard_store::StoreError;

use super::layout::{self, Frame, Nav, Viewer, error_page, field, store_error};
use super::org::form_alert;
use crate::auth::role_name;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/ui/users", get(users))
}

async fn users(State(state): State<AppState>, viewer: Viewer) -> Response {
    if !viewer.is_org_admin() {
        return error_page(
            Some(&viewer),
            &(
                StatusCode::FORBIDDEN,
                "Only organisation admins (admins of every project) manage people.".into(),
            ),
        );
    }
    let loaded = async {
        let projects = state.store.list_projects().await?;
        let users = state.store.list_users().await?;
        Ok::<_, StoreError>((projects, users))
    }
    .await;
    let (projects, mut users) = match loaded {
        Ok(x) => x,
        Err(e) => return error_page(Some(&viewer), &store_error(e)),
    };
    // Active people first, each group by email (the store's order).
    users.sort_by_key(|u| u.disabled_at.is_some());
    let active = users.iter().filter(|u| u.disabled_at.is_none()).count();
    let body = html! {
        (layout::head(&[], "People",
            Some(html! { (active) " active, " (users.len() - active) " disabled · people sign in to this web UI; programs use API keys" }),
            html! {}))
        details.panel #new-person {
            summary { "Add a person" }
            form data-api="/api/v1/users" data-method="POST" data-then="reload" autocomplete="off" {
                (form_alert())
                div.grid2 {
                    (field("user-email", "Email", html! {
                        input #user-email type="email" data-key="email" data-field="email" required maxlength="254" autocomplete="off";
                    }, None))
                    (field("user-password", "Initial password", html! {
                        input #user-password type="password" data-key="password" data-field="password" required minlength="10" autocomplete="new-password" aria-describedby="user-password-hint";
                    }, Some("At least 10 characters. Give it to them privately; it is never shown again.")))
                    (field("user-role", "Role", html! {
                        select #user-role data-key="role" data-field="role" {
                            option value="viewer" { "Viewer: reads everything, changes nothing" }
                            option value="editor" selected { "Editor: changes flags, segments, experiments, metrics" }
                            option value="admin" { "Admin: also projects, environments, API keys" }
                        }
                    }, None))
                    (field("user-project", "Project", html! {
                        select #user-project data-key="project" data-field="project" data-optional aria-describedby="user-project-hint" {
                            option value="" { "Every project" }
                            @for p in &projects { option value=(p.key) { (p.name) " (" (p.key) ")" } }
                        }
                    }, Some("An admin of every project also manages people.")))
                }
                button.primary type="submit" { "Add person" }
            }
        }
        @if users.is_empty() {
            div.panel.empty { "No people yet." }
        } @else {
            div.table-wrap {
                table #people {
                    caption.visually-hidden { "People" }
                    thead { tr {
                        th scope="col" { "Email" }
                        th scope="col" { "Role" }
                        th scope="col" { "Project" }
                        th scope="col" .hide-narrow { "Added" }
                        th scope="col" { "Status" }
                    } }
                    tbody {
                        @for u in &users {
                            tr {
                                td { (u.email) @if u.id == viewer.user.id { " " span.tag { "you" } } }
                                td { (role_name(u.role)) }
                                td { @match &u.project { Some(p) => span.mono { (p) }, None => span.muted { "every project" } } }
                                td.small.hide-narrow { (layout::when(u.created_at)) }
                                td {
                                    @if let Some(at) = u.disabled_at {
                                        span.badge.off { "Disabled" }
                                        div.small.muted { (layout::when(at)) }
                                    } @else {
                                        span.badge.on { "Active" }
                                    }
                                    @if u.disabled_at.is_none() && u.id != viewer.user.id {
                                        " "
                                        button.small.danger type="button"
                                            data-call=(format!("/api/v1/users/{}", percent_encoding::utf8_percent_encode(&u.email, percent_encoding::NON_ALPHANUMERIC)))
                                            data-method="DELETE"
                                            data-confirm=(format!("Disable {}? They are signed out at once and can no longer sign in. This cannot be undone here.", u.email))
                                            { "Disable" }
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
        &Frame {
            title: "People",
            project: None,
            nav: Nav::Users,
            projects: &projects,
        },
        body,
    )
}
