//! The frame every UI page shares: who is signed in, the navigation, the
//! page's head; and [`Viewer`], the signed-in person a page is rendered
//! for, with the role checks that decide which controls a page shows.
//!
//! Pages are rendered on the server with `maud` (escaped by default).
//! Edit controls are rendered only for a person whose role allows the
//! change; the API refuses the change anyway (`auth.rs`), so a hidden
//! button is a courtesy, not the guard.

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use switchyard_store::{Project, Role, StoreError, User};

use super::{SESSION_COOKIE, cookie, csrf_token};
use crate::auth::role_name;
use crate::state::AppState;

/// The signed-in person a page is rendered for.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: User,
    /// The session's CSRF token, sent by the page's script with changes.
    pub csrf: String,
}

impl Viewer {
    /// The person's role in `project`: their role, if they are not bound
    /// to another project.
    pub fn role_in(&self, project: &str) -> Option<Role> {
        match &self.user.project {
            Some(p) if p != project => None,
            _ => Some(self.user.role),
        }
    }

    /// Whether they may change flags, segments, experiments and metrics
    /// of `project` (editor or admin there).
    pub fn can_edit(&self, project: &str) -> bool {
        self.role_in(project).is_some_and(|r| r >= Role::Editor)
    }

    /// Whether they may administer `project` (admin there).
    pub fn can_admin(&self, project: &str) -> bool {
        self.role_in(project).is_some_and(|r| r >= Role::Admin)
    }

    /// Organisation-wide admin: not bound to a project, admin role.
    pub fn is_org_admin(&self) -> bool {
        self.user.project.is_none() && self.user.role >= Role::Admin
    }

    /// The projects they may see, from `all`.
    pub fn visible<'a>(&self, all: &'a [Project]) -> Vec<&'a Project> {
        all.iter()
            .filter(|p| self.role_in(&p.key).is_some())
            .collect()
    }
}

/// A page for someone not signed in: the sign-in page, coming back here
/// afterwards.
#[derive(Debug)]
pub enum Unsigned {
    Redirect(String),
    Failed(StoreError),
}

impl IntoResponse for Unsigned {
    fn into_response(self) -> Response {
        match self {
            Unsigned::Redirect(next) => {
                let target = format!(
                    "/ui/login?next={}",
                    percent_encoding::utf8_percent_encode(
                        &next,
                        percent_encoding::NON_ALPHANUMERIC
                    )
                );
                let mut resp = StatusCode::SEE_OTHER.into_response();
                if let Ok(v) = HeaderValue::from_str(&target) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                resp
            }
            Unsigned::Failed(e) => error_page(None, &store_error(e)),
        }
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Unsigned;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Unsigned> {
        let here = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.to_string(), |u| u.0.to_string());
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(Unsigned::Redirect(here));
        };
        match state.store.session(token).await {
            Ok(Some(session)) => Ok(Viewer {
                csrf: csrf_token(token),
                user: session.user,
            }),
            Ok(None) => Err(Unsigned::Redirect(here)),
            Err(e) => Err(Unsigned::Failed(e)),
        }
    }
}

/// Where a page sits in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Flags,
    Experiments,
    Segments,
    Metrics,
    Projects,
    Keys,
    Users,
    Audit,
    DeadLetters,
    None,
}

/// What the frame needs to know about a page.
#[derive(Debug)]
pub struct Frame<'a> {
    pub title: &'a str,
    /// The project the page belongs to, for the project-scoped links.
    pub project: Option<&'a str>,
    pub nav: Nav,
    /// The projects the viewer may see (for the project switcher).
    pub projects: &'a [Project],
}

impl<'a> Frame<'a> {
    /// The frame of a page inside `project`.
    pub fn in_project(
        nav: Nav,
        title: &'a str,
        project: &'a str,
        projects: &'a [Project],
    ) -> Frame<'a> {
        Frame {
            title,
            project: Some(project),
            nav,
            projects,
        }
    }
}

/// What a person with no role in a project (or asking for one that does
/// not exist) is told: the same, so project keys do not leak.
pub const NO_PROJECT: &str = "No such project, or you have no role in it.";

/// A 404 page saying `what`.
pub fn not_found(viewer: &Viewer, what: &str) -> Response {
    error_page(Some(viewer), &(StatusCode::NOT_FOUND, what.to_string()))
}

impl Viewer {
    /// The 404 page when they have no role in `project`.
    pub fn refused(&self, project: &str) -> Option<Response> {
        self.role_in(project)
            .is_none()
            .then(|| not_found(self, NO_PROJECT))
    }
}

/// A message for a failed store read, without database detail.
pub fn store_error(e: StoreError) -> (StatusCode, String) {
    let api = crate::error::ApiError::from(e);
    let status = api.status();
    let message = match status {
        StatusCode::NOT_FOUND => "Not found: it may have been deleted or renamed.".to_string(),
        StatusCode::SERVICE_UNAVAILABLE => "The configuration store is unreachable just now. Evaluation keeps serving; try this page again in a few seconds.".to_string(),
        _ => api.public_message(),
    };
    (status, message)
}

fn logo() -> Markup {
    html! {
        svg width="20" height="20" viewBox="0 0 20 20" aria-hidden="true" {
            path d="M3 5h9l5 5-5 5H3" fill="none" stroke="#60a5fa" stroke-width="2.2" stroke-linejoin="round" {}
            circle cx="6" cy="10" r="2" fill="#f0a500" {}
        }
    }
}

/// The whole page: head, top bar, navigation, `body`.
pub fn page(viewer: &Viewer, frame: &Frame<'_>, body: Markup) -> Response {
    let visible = viewer.visible(frame.projects);
    let link = |nav: Nav, href: String, label: &str| -> Markup {
        html! {
            a href=(href) aria-current=[(frame.nav == nav).then_some("page")] { (label) }
        }
    };
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(viewer.csrf);
                title { (frame.title) " · Switchyard" }
                link rel="stylesheet" href=(super::assets::css_url());
                script src=(super::assets::js_url()) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui" { (logo()) "Switchyard" }
                    @if visible.len() > 1 || (visible.len() == 1 && frame.project.is_none()) {
                        label.visually-hidden for="project-switch" { "Project" }
                        select #project-switch data-navigate="" {
                            @if frame.project.is_none() { option value="" selected { "Choose a project" } }
                            @for p in &visible {
                                option value=(format!("/ui/p/{}/flags", p.key)) selected[frame.project == Some(p.key.as_str())] { (p.name) }
                            }
                        }
                    } @else if let Some(p) = frame.project {
                        span.muted { (p) }
                    }
                    div.who {
                        span { (viewer.user.email) " · " (role_name(viewer.user.role)) }
                        form method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                div.frame {
                    nav.side aria-label="Main" {
                        @if let Some(p) = frame.project {
                            h2 { "Project" }
                            (link(Nav::Flags, format!("/ui/p/{p}/flags"), "Flags"))
                            (link(Nav::Experiments, format!("/ui/p/{p}/experiments"), "Experiments"))
                            (link(Nav::Segments, format!("/ui/p/{p}/segments"), "Segments"))
                            (link(Nav::Metrics, format!("/ui/p/{p}/metrics"), "Metrics"))
                        }
                        h2 { "Organisation" }
                        (link(Nav::Projects, "/ui/projects".into(), "Projects & environments"))
                        // Keys are an admin's business: of every project, or of theirs.
                        @if viewer.user.role >= Role::Admin {
                            (link(Nav::Keys, "/ui/keys".into(), "API keys"))
                        }
                        @if viewer.is_org_admin() {
                            (link(Nav::Users, "/ui/users".into(), "People"))
                        }
                        (link(Nav::Audit, match frame.project { Some(p) => format!("/ui/audit?project={p}"), None => "/ui/audit".into() }, "Audit log"))
                        (link(Nav::DeadLetters, "/ui/events/dead-letters".into(), "Rejected events"))
                    }
                    main #main tabindex="-1" {
                        div #page-alert .alert.error hidden role="alert" {}
                        (body)
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

/// A page shown without the frame: the sign-in and setup forms.
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Switchyard" }
                link rel="stylesheet" href=(super::assets::css_url());
            }
            body {
                main.bare #main {
                    div.brand { (logo()) "Switchyard" }
                    div.panel {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
    }
}

/// An error as a page (with the frame when someone is signed in).
pub fn error_page(viewer: Option<&Viewer>, (status, message): &(StatusCode, String)) -> Response {
    let body = html! {
        div.head { div { h1 { (status.canonical_reason().unwrap_or("Error")) } } }
        div.alert.error role="alert" { (message) }
        p { a href="/ui" { "Back to the start" } }
    };
    let mut resp = match viewer {
        Some(v) => page(
            v,
            &Frame {
                title: status.canonical_reason().unwrap_or("Error"),
                project: None,
                nav: Nav::None,
                projects: &[],
            },
            body,
        ),
        None => html_response(
            *status,
            bare(status.canonical_reason().unwrap_or("Error"), body),
        ),
    };
    *resp.status_mut() = *status;
    resp
}

/// An HTML answer with the UI's headers: never cached, not framed, and
/// scripts only from this origin.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut resp = (status, markup.into_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// A fragment of a page (for the parts that refresh themselves).
pub fn fragment(markup: Markup) -> Response {
    html_response(StatusCode::OK, markup)
}

/// Raw, already escaped markup.
pub fn raw(s: &str) -> PreEscaped<&str> {
    PreEscaped(s)
}

/// A timestamp as people read it, in UTC.
pub fn when(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// A page heading with breadcrumbs and actions on the right.
pub fn head(
    crumbs: &[(&str, String)],
    title: &str,
    sub: Option<Markup>,
    actions: Markup,
) -> Markup {
    html! {
        div.head {
            div {
                @if !crumbs.is_empty() {
                    div.crumbs {
                        @for (i, (label, href)) in crumbs.iter().enumerate() {
                            @if i > 0 { " / " }
                            a href=(href) { (label) }
                        }
                    }
                }
                h1 { (title) }
                @if let Some(s) = sub { p.sub { (s) } }
            }
            div.actions { (actions) }
        }
    }
}

/// A form field: label, control, hint, and the place its error is shown.
pub fn field(id: &str, label: &str, control: Markup, hint: Option<&str>) -> Markup {
    html! {
        div.field {
            label for=(id) { (label) }
            (control)
            @if let Some(h) = hint { div.hint id=(format!("{id}-hint")) { (h) } }
            div.field-error aria-live="polite" {}
        }
    }
}
