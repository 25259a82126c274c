//! People, not only keys: sign-in to the web UI with an email and a
//! password, and the browser session that follows.
//!
//! - `GET /ui/login`: a minimal HTML form (no external assets).
//! - `POST /ui/login` (form: `email`, `password`, `csrf`): checks the
//!   password (Argon2id, in the store), starts a session and sets the
//!   session cookie: a random 256-bit id, of which the store keeps only
//!   the SHA-256; `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` when
//!   the request came over HTTPS (`X-Forwarded-Proto: https`) or
//!   [`UiConfig::secure_cookies`] says so.
//! - `POST /ui/logout`: ends the session.
//! - `GET /ui/session`: who is signed in, and the session's CSRF token.
//! - `GET`/`POST /ui/setup?token=...`: while no user exists, the one-time
//!   link `serve` prints sets the first admin's email and password
//!   ([`setup_link`]).
//!
//! Cross-site request forgery: every unsafe request (POST, PUT, PATCH,
//! DELETE) under `/ui` and every cookie-authenticated unsafe request to
//! `/api/v1` needs an `Origin` of this host (when the browser sends one)
//! and the session's CSRF token (the `X-CSRF-Token` header, or a `csrf`
//! form field under `/ui`); otherwise 403. The token is the SHA-256 of a
//! fixed label and the session id: only a page that can read the session's
//! own answers learns it. The sign-in form, before any session, is guarded
//! by a double-submitted random cookie instead.
//!
//! Sign-in attempts are rate-limited per client IP (the TCP peer; when the
//! peer is one of [`UiConfig::trusted_proxies`], the nearest address in
//! `X-Forwarded-For` that is not a trusted proxy) and per email, each in a bounded map;
//! an unknown email is checked against a dummy hash, so it fails as slowly
//! as a wrong password. At most [`MAX_CONCURRENT_HASHES`] password checks
//! run at once. Passwords are never logged nor echoed.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use switchyard_store::Session;

use crate::auth::{Principal, role_name};
use crate::error::ApiError;
use crate::state::AppState;

pub use ipnet::IpNet;

pub mod assets;
pub mod audit;
pub mod cache;
pub mod charts;
pub mod deadletters;
pub mod experiments;
pub mod flag_editor;
pub mod flags;
pub mod layout;
pub mod metrics;
pub mod org;
pub mod pages;
pub mod results;
pub mod rules;
pub mod segments;
pub mod users;

pub const SESSION_COOKIE: &str = "sy_session";
const LOGIN_CSRF_COOKIE: &str = "sy_login_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Password checks (about 19 MiB and tens of milliseconds each) at once.
pub const MAX_CONCURRENT_HASHES: usize = 4;
/// Largest body a `/ui` route reads.
const UI_BODY_LIMIT: usize = 16 * 1024;
/// Keys each sign-in limiter tracks before it forgets idle ones.
const LIMITER_KEYS: usize = 50_000;

/// Settings of sign-in and sessions.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// How long a session lives after sign-in.
    pub session_ttl: Duration,
    /// `Some(true)`: cookies are always `Secure`; `Some(false)`: never;
    /// `None`: when the request came over HTTPS (`X-Forwarded-Proto`).
    pub secure_cookies: Option<bool>,
    /// Sign-in attempts per minute per email (a burst of as many).
    pub login_attempts_per_email: u32,
    /// Sign-in attempts per minute per client IP (a burst of as many).
    pub login_attempts_per_ip: u32,
    /// Reverse proxies (address ranges) whose `X-Forwarded-For` names the
    /// client. Empty: the TCP peer is the client, whatever the header says.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookies: None,
            login_attempts_per_email: 5,
            login_attempts_per_ip: 20,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Sign-in rate limits and the bound on concurrent password checks.
#[derive(Debug)]
pub struct UiState {
    per_email: AttemptLimiter,
    per_ip: AttemptLimiter,
    hashing: tokio::sync::Semaphore,
    /// The one-time setup link's token (its SHA-256) and expiry.
    setup: Mutex<Option<(String, std::time::Instant)>>,
    /// The flags of recently shown projects (`cache.rs`).
    pub flags: cache::FlagCache,
}

/// How long a setup link printed at start stays valid.
pub const SETUP_LINK_TTL: Duration = Duration::from_secs(3600);

/// While no user exists: a new single-use setup token (valid for
/// [`SETUP_LINK_TTL`], held hashed in this node's memory, replacing any
/// earlier one) for `GET /ui/setup?token=...`, where someone sets the
/// first admin's email and password. `None` once a user exists.
pub async fn setup_link(state: &AppState) -> Result<Option<String>, switchyard_store::StoreError> {
    if !state.store.list_users().await?.is_empty() {
        return Ok(None);
    }
    let token = switchyard_store::password::random_token()?;
    let hash = switchyard_store::hash_secret(&token);
    *state
        .ui
        .setup
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) =
        Some((hash, std::time::Instant::now() + SETUP_LINK_TTL));
    Ok(Some(token))
}

/// Whether `token` is the live setup token.
fn setup_token_ok(state: &AppState, token: &str) -> bool {
    let setup = state
        .ui
        .setup
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    setup.as_ref().is_some_and(|(hash, until)| {
        std::time::Instant::now() < *until && same(hash, &switchyard_store::hash_secret(token))
    })
}

impl UiState {
    pub fn new(config: &UiConfig) -> UiState {
        UiState {
            per_email: AttemptLimiter::new(config.login_attempts_per_email),
            per_ip: AttemptLimiter::new(config.login_attempts_per_ip),
            hashing: tokio::sync::Semaphore::new(MAX_CONCURRENT_HASHES),
            setup: Mutex::new(None),
            flags: cache::FlagCache::default(),
        }
    }
}

/// A keyed GCRA limiter with a bounded number of keys: past
/// [`LIMITER_KEYS`] it forgets keys whose budget is full again, and if
/// that is not enough, starts afresh.
#[derive(Debug)]
struct AttemptLimiter {
    quota: Option<Quota>,
    limiter: Mutex<DefaultKeyedRateLimiter<String>>,
}

impl AttemptLimiter {
    fn new(per_minute: u32) -> AttemptLimiter {
        let quota = NonZeroU32::new(per_minute).map(|n| Quota::per_minute(n).allow_burst(n));
        AttemptLimiter {
            quota,
            limiter: Mutex::new(RateLimiter::keyed(
                quota.unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)),
            )),
        }
    }

    fn check(&self, key: &str) -> Result<(), ApiError> {
        let Some(quota) = self.quota else {
            return Ok(());
        };
        let mut limiter = self
            .limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if limiter.len() >= LIMITER_KEYS {
            limiter.retain_recent();
            if limiter.len() >= LIMITER_KEYS {
                *limiter = RateLimiter::keyed(quota);
            }
        }
        limiter.check_key(&key.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::TooManyRequests {
                retry_after_secs: wait.as_secs().max(1),
            }
        })
    }
}

/// The `/ui` routes, with the CSRF guard on every unsafe method.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/session", get(session_info))
        .route("/ui/setup", get(setup_form).post(setup))
        .merge(pages::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(axum::extract::DefaultBodyLimit::max(UI_BODY_LIMIT))
}

/// The CSRF token of the session whose id is `token`.
pub fn csrf_token(token: &str) -> String {
    switchyard_store::hash_secret(&format!("switchyard-csrf:{token}"))
}

/// Equality that takes as long whatever the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name`, if the request has it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Whether the request's `Origin`, when it has one, is this host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    origin
        .to_str()
        .ok()
        .and_then(|o| {
            o.strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"))
        })
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn forbidden_csrf() -> ApiError {
    ApiError::Forbidden(
        "a signed-in change needs this session's CSRF token (X-CSRF-Token) and a same-origin request"
            .into(),
    )
}

/// The principal of a request that has no API key: its session cookie's
/// user, if the session is live; for an unsafe method only with the
/// session's CSRF token in `X-CSRF-Token` and a same-origin `Origin`.
pub(crate) async fn session_principal(
    parts: &Parts,
    state: &AppState,
) -> Result<Principal, ApiError> {
    let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
        return Err(ApiError::Unauthorized);
    };
    let Some(session) = state.store.session(token).await? else {
        return Err(ApiError::Unauthorized);
    };
    if is_unsafe(&parts.method) {
        let header = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !same_origin(&parts.headers) || !same(header, &csrf_token(token)) {
            return Err(forbidden_csrf());
        }
    }
    Ok(Principal::of_user(&session.user))
}

/// The session the guard verified, for the handler.
#[derive(Debug, Clone)]
struct Verified {
    token: String,
    session: Session,
}

#[derive(Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

/// Every unsafe request under `/ui`: a same-origin `Origin` and, but for
/// the sign-in form (double-submit, in [`login`]) and the setup form (its
/// single-use token, in [`setup`]), a live session and its
/// CSRF token, in `X-CSRF-Token` or a `csrf` form field. Otherwise 403.
async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !is_unsafe(req.method()) {
        return next.run(req).await;
    }
    if !same_origin(req.headers()) {
        return forbidden_csrf().into_response();
    }
    // The sign-in form has its double-submit cookie, the setup form its
    // single-use token: neither has a session yet.
    if matches!(req.uri().path(), "/ui/login" | "/ui/setup") {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let Some(token) = cookie(&parts.headers, SESSION_COOKIE).map(str::to_string) else {
        return forbidden_csrf().into_response();
    };
    let session = match state.store.session(&token).await {
        Ok(Some(s)) => s,
        Ok(None) => return forbidden_csrf().into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let bytes = match axum::body::to_bytes(body, UI_BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => return ApiError::PayloadTooLarge.into_response(),
    };
    let header = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let field = header.or_else(|| {
        serde_urlencoded::from_bytes::<CsrfField>(&bytes)
            .ok()
            .and_then(|f| f.csrf)
    });
    if !field.is_some_and(|f| same(&f, &csrf_token(&token))) {
        return forbidden_csrf().into_response();
    }
    parts.extensions.insert(Verified { token, session });
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The client's address: the TCP `peer`, unless it is a trusted proxy;
/// then `X-Forwarded-For` read from the right (the nearest hop first),
/// skipping trusted proxies, up to the first address that is not one. A
/// header that does not parse, or that names only trusted proxies, leaves
/// the last trusted address seen: a client cannot pick its own address by
/// writing the header, only the proxies it passed through can.
pub fn client_ip(
    peer: std::net::IpAddr,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev().take(32) {
        let Ok(ip) = hop.trim().parse::<std::net::IpAddr>() else {
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.ui.secure_cookies.unwrap_or_else(|| {
        headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
    })
}

fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax{secure}"
    ))
    .ok()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> String {
    layout::bare(title, maud::PreEscaped(body.to_string())).into_string()
}

/// Where to go after signing in: a path of this UI, else the start page.
fn safe_next(next: &str) -> &str {
    let ok = next.starts_with("/ui")
        && !next.starts_with("/ui/login")
        && !next.contains("//")
        && !next.contains('\\')
        && next.len() <= 2048
        && next.chars().all(|c| c.is_ascii_graphic());
    if ok { next } else { "/ui" }
}

/// The sign-in page, with a fresh double-submit token (cookie and field).
fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
    next: &str,
) -> Response {
    let csrf = match switchyard_store::password::random_token() {
        Ok(t) => t,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let error = error
        .map(|e| format!("<p role=\"alert\">{}</p>\n", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "{error}<form method=\"post\" action=\"/ui/login\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\n\
         <div class=\"field\"><label for=\"email\">Email</label>\
         <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required autofocus></div>\n\
         <div class=\"field\"><label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required></div>\n\
         <p><button class=\"primary\" type=\"submit\">Sign in</button></p>\n</form>\n",
        escape(safe_next(next))
    );
    let mut resp = (status, Html(page("Sign in", &body))).into_response();
    if let Some(c) = set_cookie(LOGIN_CSRF_COOKIE, &csrf, 3600, secure(state, headers)) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[derive(Deserialize)]
struct NextQuery {
    #[serde(default)]
    next: String,
}

async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<NextQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let next = query.map(|q| q.0.next).unwrap_or_default();
    login_page(&state, &headers, StatusCode::OK, None, &next)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

async fn login(
    State(state): State<AppState>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<axum::Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(axum::Form(form)) = form else {
        return login_page(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            Some("The form could not be read; fill it in again."),
            "",
        );
    };
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same(expected, &form.csrf) {
        return forbidden_csrf().into_response();
    }
    let ip = match peer {
        Some(axum::Extension(ConnectInfo(a))) => {
            client_ip(a.ip(), &headers, &state.config.ui.trusted_proxies).to_string()
        }
        None => "unknown".to_string(),
    };
    let email_key: String = form.email.trim().to_lowercase().chars().take(254).collect();
    for limited in [
        state.ui.per_ip.check(&ip),
        state.ui.per_email.check(&email_key),
    ] {
        if let Err(e) = limited {
            tracing::info!(%ip, "sign-in rate limited");
            let mut resp = login_page(
                &state,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                Some("Too many sign-in attempts; wait a minute and try again."),
                &form.next,
            );
            if let ApiError::TooManyRequests { retry_after_secs } = e
                && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
            {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
    }
    let user = {
        let Ok(_permit) = state.ui.hashing.acquire().await else {
            return ApiError::Unavailable("shutting down".into()).into_response();
        };
        match state.store.check_login(&form.email, &form.password).await {
            Ok(u) => u,
            Err(e) => return ApiError::from(e).into_response(),
        }
    };
    let Some(user) = user else {
        tracing::info!(%ip, "sign-in failed");
        return login_page(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("The email or the password is wrong."),
            &form.next,
        );
    };
    let ttl = state.config.ui.session_ttl;
    let created = match state
        .store
        .create_session(
            &user.id,
            time::Duration::try_from(ttl).unwrap_or(time::Duration::HOUR),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => return ApiError::from(e).into_response(),
    };
    tracing::info!(user = %user.email, "signed in");
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(safe_next(&form.next)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    let secure = secure(&state, &headers);
    let h = resp.headers_mut();
    if let Some(c) = set_cookie(SESSION_COOKIE, &created.token, ttl.as_secs(), secure) {
        h.append(header::SET_COOKIE, c);
    }
    if let Some(c) = set_cookie(LOGIN_CSRF_COOKIE, "", 0, secure) {
        h.append(header::SET_COOKIE, c);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    verified: Option<axum::Extension<Verified>>,
) -> Response {
    let Some(axum::Extension(v)) = verified else {
        return forbidden_csrf().into_response();
    };
    if let Err(e) = state.store.delete_session(&v.token).await {
        return ApiError::from(e).into_response();
    }
    tracing::info!(user = %v.session.user.email, "signed out");
    let mut resp = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_static("/ui/login"))],
    )
        .into_response();
    if let Some(c) = set_cookie(SESSION_COOKIE, "", 0, secure(&state, &headers)) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

/// Who is signed in: email, role, project, expiry and the CSRF token the
/// pages send with every change.
async fn session_info(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = cookie(&headers, SESSION_COOKIE) else {
        return ApiError::Unauthorized.into_response();
    };
    let session = match state.store.session(token).await {
        Ok(Some(s)) => s,
        Ok(None) => return ApiError::Unauthorized.into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let expires_at = session
        .expires_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut resp = Json(serde_json::json!({
        "email": session.user.email,
        "role": role_name(session.user.role),
        "project": session.user.project,
        "expires_at": expires_at,
        "csrf_token": csrf_token(token),
    }))
    .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn setup_page(token: &str, status: StatusCode, error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!("<p role=\"alert\">{}</p>\n", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "{error}<p>Choose the email and password of the first administrator.</p>\n\
         <form method=\"post\" action=\"/ui/setup\">\n\
         <input type=\"hidden\" name=\"token\" value=\"{}\">\n\
         <p><label for=\"email\">Email</label><br>\
         <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required></p>\n\
         <p><label for=\"password\">Password (at least {} characters)</label><br>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" required></p>\n\
         <p><button type=\"submit\">Create administrator</button></p>\n</form>\n",
        escape(token),
        switchyard_store::password::MIN_PASSWORD_CHARS
    );
    let mut resp = (status, Html(page("Set up Switchyard", &body))).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn setup_gone() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(page(
            "Setup link not valid",
            "<p>This setup link is used, expired, or not this server's. \
             Create users with <code>switchyard user add</code>.</p>\n",
        )),
    )
        .into_response()
}

#[derive(Deserialize)]
struct SetupQuery {
    #[serde(default)]
    token: String,
}

async fn setup_form(
    State(state): State<AppState>,
    query: Result<axum::extract::Query<SetupQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match query {
        Ok(axum::extract::Query(q)) if setup_token_ok(&state, &q.token) => {
            setup_page(&q.token, StatusCode::OK, None)
        }
        _ => setup_gone(),
    }
}

#[derive(Deserialize)]
struct SetupForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

/// Creates the first admin, once: the token is spent on success, and
/// refused once any user exists.
async fn setup(
    State(state): State<AppState>,
    form: Result<axum::Form<SetupForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(axum::Form(form)) = form else {
        return setup_gone();
    };
    // Taken now, so two concurrent posts cannot both use it; put back if
    // the input is refused.
    let taken = {
        let mut setup = state
            .ui
            .setup
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match setup.as_ref() {
            Some((hash, until))
                if std::time::Instant::now() < *until
                    && same(hash, &switchyard_store::hash_secret(&form.token)) =>
            {
                setup.take()
            }
            _ => None,
        }
    };
    let Some(taken) = taken else {
        return setup_gone();
    };
    let restore = |state: &AppState| {
        *state
            .ui
            .setup
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(taken.clone());
    };
    match state.store.list_users().await {
        Ok(users) if users.is_empty() => {}
        Ok(_) => return setup_gone(),
        Err(e) => {
            restore(&state);
            return ApiError::from(e).into_response();
        }
    }
    let created = {
        let Ok(_permit) = state.ui.hashing.acquire().await else {
            return ApiError::Unavailable("shutting down".into()).into_response();
        };
        state
            .store
            .create_user(
                "system:setup",
                switchyard_store::UserInput {
                    email: form.email,
                    password: form.password,
                    role: switchyard_store::Role::Admin,
                    project: None,
                },
            )
            .await
    };
    match created {
        Ok(user) => {
            tracing::info!(user = %user.email, "first administrator created through the setup link");
            (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, HeaderValue::from_static("/ui/login"))],
            )
                .into_response()
        }
        Err(switchyard_store::StoreError::InvalidField { message, .. }) => {
            restore(&state);
            setup_page(&form.token, StatusCode::BAD_REQUEST, Some(&message))
        }
        Err(e) => {
            restore(&state);
            ApiError::from(e).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_forwarded_address_counts_only_behind_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // No trusted proxies, or a peer that is not one: the header is ignored.
        assert_eq!(
            client_ip(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &[]),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &trusted),
            ip("203.0.113.9")
        );
        // Behind the proxy: the nearest untrusted hop, not a spoofed first entry.
        assert_eq!(
            client_ip(
                ip("10.0.0.2"),
                &headers(&["6.6.6.6, 198.51.100.7"]),
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(
                ip("10.0.0.2"),
                &headers(&["6.6.6.6", "198.51.100.7, 10.0.0.5"]),
                &trusted
            ),
            ip("198.51.100.7")
        );
        // Junk or nothing but proxies: the last trusted hop stands.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers(&["nonsense"]), &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers(&["10.1.1.1"]), &trusted),
            ip("10.1.1.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers(&[]), &trusted),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn only_paths_of_this_ui_are_followed_after_sign_in() {
        assert_eq!(safe_next("/ui/p/demo/flags?q=x"), "/ui/p/demo/flags?q=x");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/ui//evil",
            "/api/v1/projects",
            "/ui/login",
            "/ui\\x",
            "",
        ] {
            assert_eq!(safe_next(bad), "/ui", "{bad}");
        }
    }
}
