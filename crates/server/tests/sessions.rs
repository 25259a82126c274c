//! People, not only keys: sign-in, session cookies, CSRF, rate limits,
//! cookie-authenticated control API calls, sign-out and expiry, over HTTP.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{BACKENDS, Backend, TestServer, start, start_with};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};
use switchyard_server::ServerConfig;
use switchyard_server::ui::UiConfig;
use switchyard_store::{AuditFilter, Role, UserInput};

const PASSWORD: &str = "tr0ub4dor&3-but-longer";

async fn add_user(server: &TestServer, email: &str, role: Role) {
    server
        .store
        .create_user(
            "system:test",
            UserInput {
                email: email.into(),
                password: PASSWORD.into(),
                role,
                project: None,
            },
        )
        .await
        .unwrap();
}

/// A browser: a cookie jar (name to value) and no redirects followed.
struct Browser {
    client: reqwest::Client,
    url: String,
    cookies: HashMap<String, String>,
    /// Every `Set-Cookie` header seen, whole.
    set_cookies: Vec<String>,
}

impl Browser {
    fn new(server: &TestServer) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            url: server.url.clone(),
            cookies: HashMap::new(),
            set_cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn remember(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let v = v.to_str().unwrap().to_string();
            let (pair, attrs) = v.split_once(';').unwrap_or((&v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.into(), value.into());
            }
            self.set_cookies.push(v);
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> (StatusCode, HeaderMap, String) {
        let req = if self.cookies.is_empty() {
            req
        } else {
            req.header("cookie", self.cookie_header())
        };
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        self.remember(&headers);
        (status, headers, resp.text().await.unwrap())
    }

    /// `GET /ui/login`: the form's CSRF field.
    async fn login_form(&mut self) -> String {
        let (status, _, html) = self
            .send(self.client.get(format!("{}/ui/login", self.url)))
            .await;
        assert_eq!(status, StatusCode::OK, "{html}");
        csrf_field(&html)
    }

    async fn login(&mut self, email: &str, password: &str) -> (StatusCode, HeaderMap, String) {
        let csrf = self.login_form().await;
        let req = self.client.post(format!("{}/ui/login", self.url)).form(&[
            ("email", email),
            ("password", password),
            ("csrf", &csrf),
        ]);
        self.send(req).await
    }

    async fn session(&mut self) -> (StatusCode, serde_json::Value) {
        let (status, _, body) = self
            .send(self.client.get(format!("{}/ui/session", self.url)))
            .await;
        (status, serde_json::from_str(&body).unwrap_or_default())
    }

    async fn csrf_token(&mut self) -> String {
        let (status, s) = self.session().await;
        assert_eq!(status, StatusCode::OK, "{s}");
        s["csrf_token"].as_str().unwrap().to_string()
    }
}

fn csrf_field(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_sets_a_hardened_session_cookie_and_a_wrong_password_does_not() {
    for backend in BACKENDS {
        let server = start(backend).await;
        add_user(&server, "ann@example.com", Role::Editor).await;
        let mut b = Browser::new(&server);

        // The form: labelled fields, no external assets.
        let (status, _, html) = b.send(b.client.get(format!("{}/ui/login", b.url))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains("<label for=\"email\">") && html.contains("<label for=\"password\">")
        );
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{html}"
        );

        let (status, _, body) = b.login("ann@example.com", "not the password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{backend:?}");
        assert!(body.contains("wrong") && !body.contains("not the password"));
        assert!(!b.cookies.contains_key("sy_session"));
        let (status, _, _) = b.login("nobody@example.com", PASSWORD).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(!b.cookies.contains_key("sy_session"));

        let (status, _, body) = b.login("  ANN@example.com ", PASSWORD).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        assert!(!body.contains(PASSWORD));
        let cookie = b
            .set_cookies
            .iter()
            .rev()
            .find(|c| c.starts_with("sy_session="))
            .unwrap()
            .clone();
        for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
            assert!(cookie.contains(flag), "{flag} missing: {cookie}");
        }
        assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
        let token = b.cookies["sy_session"].clone();
        assert!(token.len() >= 43, "256 bits: {token}");

        let (status, s) = b.session().await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(s["email"], "ann@example.com");
        assert_eq!(s["role"], "editor");
        assert!(s["csrf_token"].as_str().unwrap().len() >= 32);
        assert!(
            !s.to_string().contains(&token),
            "the session id is not echoed"
        );

        // Behind a TLS-terminating proxy the cookie is Secure.
        let mut tls = Browser::new(&server);
        let csrf = tls.login_form().await;
        let req = tls
            .client
            .post(format!("{}/ui/login", tls.url))
            .header("x-forwarded-proto", "https")
            .form(&[
                ("email", "ann@example.com"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ]);
        let (status, _, _) = tls.send(req).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(
            tls.set_cookies
                .iter()
                .any(|c| c.starts_with("sy_session=") && c.contains("; Secure")),
            "{:?}",
            tls.set_cookies
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_without_its_csrf_cookie_or_from_another_origin_is_refused() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, "ann@example.com", Role::Admin).await;
    let mut b = Browser::new(&server);
    let form = [
        ("email", "ann@example.com"),
        ("password", PASSWORD),
        ("csrf", "forged"),
    ];
    // No form cookie at all.
    let (status, _, _) = b
        .send(b.client.post(format!("{}/ui/login", b.url)).form(&form))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A cookie, but a field that does not match it.
    b.login_form().await;
    let (status, _, _) = b
        .send(b.client.post(format!("{}/ui/login", b.url)).form(&form))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The right pair, posted from another site.
    let csrf = b.login_form().await;
    let good = [
        ("email", "ann@example.com"),
        ("password", PASSWORD),
        ("csrf", &csrf),
    ];
    let req = b
        .client
        .post(format!("{}/ui/login", b.url))
        .header("origin", "https://evil.example")
        .form(&good);
    let (status, _, _) = b.send(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!b.cookies.contains_key("sy_session"));
    // From this origin it works.
    let req = b
        .client
        .post(format!("{}/ui/login", b.url))
        .header("origin", b.url.clone())
        .form(&good);
    let (status, _, _) = b.send(req).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_attempts_are_rate_limited_per_email_and_per_client_ip() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, "ann@example.com", Role::Viewer).await;
    let mut b = Browser::new(&server);
    // Five attempts a minute per email (the default): the sixth is refused
    // even with the right password.
    for _ in 0..5 {
        let (status, _, _) = b.login("ann@example.com", "guess guess guess").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, headers, body) = b.login("Ann@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert!(!b.cookies.contains_key("sy_session"));
    server.stop().await;

    // Per client IP, whatever the email.
    let config = ServerConfig {
        ui: UiConfig {
            login_attempts_per_ip: 3,
            ..UiConfig::default()
        },
        ..ServerConfig::default()
    };
    let server = start_with(Backend::Sqlite, config).await;
    add_user(&server, "ann@example.com", Role::Viewer).await;
    let mut b = Browser::new(&server);
    for i in 0..3 {
        let (status, _, _) = b
            .login(&format!("u{i}@example.com"), "guess guess guess")
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = b.login("ann@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    server.stop().await;
}

/// Signs in with `X-Forwarded-For: forwarded`.
async fn login_via(b: &mut Browser, forwarded: &str, email: &str, password: &str) -> StatusCode {
    let csrf = b.login_form().await;
    let req = b
        .client
        .post(format!("{}/ui/login", b.url))
        .header("x-forwarded-for", forwarded)
        .form(&[("email", email), ("password", password), ("csrf", &csrf)]);
    b.send(req).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_client_is_limited_not_the_proxy() {
    // The test client connects from 127.0.0.1: as a trusted proxy, each
    // forwarded client has its own budget.
    let config = ServerConfig {
        ui: UiConfig {
            login_attempts_per_ip: 3,
            login_attempts_per_email: 100,
            trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
            ..UiConfig::default()
        },
        ..ServerConfig::default()
    };
    let server = start_with(Backend::Sqlite, config).await;
    add_user(&server, "ann@example.com", Role::Viewer).await;
    let mut b = Browser::new(&server);
    for i in 0..3 {
        let status = login_via(
            &mut b,
            "198.51.100.7",
            &format!("u{i}@example.com"),
            "guess guess guess",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login_via(&mut b, "198.51.100.7", "ann@example.com", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy signs in; a spoofed first hop
    // does not hide the limited client.
    assert_eq!(
        login_via(&mut b, "198.51.100.8", "ann@example.com", PASSWORD).await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        login_via(
            &mut b,
            "203.0.113.1, 198.51.100.7",
            "ann@example.com",
            PASSWORD
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS
    );
    server.stop().await;

    // Not trusted (the default): the header changes nothing.
    let config = ServerConfig {
        ui: UiConfig {
            login_attempts_per_ip: 3,
            login_attempts_per_email: 100,
            ..UiConfig::default()
        },
        ..ServerConfig::default()
    };
    let server = start_with(Backend::Sqlite, config).await;
    add_user(&server, "ann@example.com", Role::Viewer).await;
    let mut b = Browser::new(&server);
    for i in 0..3 {
        let status = login_via(
            &mut b,
            &format!("198.51.100.{i}"),
            "ann@example.com",
            "guess guess guess",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login_via(&mut b, "198.51.100.99", "ann@example.com", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_writes_to_the_control_api_only_with_its_csrf_token_and_is_audited_as_the_user() {
    for backend in BACKENDS {
        let server = start(backend).await;
        add_user(&server, "ann@example.com", Role::Admin).await;
        let mut b = Browser::new(&server);
        assert_eq!(
            b.login("ann@example.com", PASSWORD).await.0,
            StatusCode::SEE_OTHER
        );
        let projects = format!("{}/api/v1/projects", b.url);

        // Reading needs the cookie only.
        let (status, _, body) = b.send(b.client.get(&projects)).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let new = serde_json::json!({"key": "web", "name": "Web"});
        // The cookie alone cannot write; nor with a wrong token.
        let (status, _, body) = b.send(b.client.post(&projects).json(&new)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, _, _) = b
            .send(
                b.client
                    .post(&projects)
                    .header("x-csrf-token", "0".repeat(64))
                    .json(&new),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // The right token from another origin: refused too.
        let token = b.csrf_token().await;
        let (status, _, _) = b
            .send(
                b.client
                    .post(&projects)
                    .header("x-csrf-token", &token)
                    .header("origin", "https://evil.example")
                    .json(&new),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            server.store.get_project("web").await.is_err(),
            "nothing written"
        );

        let (status, _, body) = b
            .send(
                b.client
                    .post(&projects)
                    .header("x-csrf-token", &token)
                    .json(&new),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend:?}: {body}");
        let audit = server
            .store
            .list_audit(AuditFilter {
                resource_kind: Some("project".into()),
                resource_key: Some("web".into()),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].actor, "user:ann@example.com");

        // Without a cookie nor a key: 401, as before.
        let (status, _, _) = reqwest::Client::new()
            .get(&projects)
            .send()
            .await
            .map(|r| (r.status(), (), ()))
            .unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_viewer_reads_but_cannot_write() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, "vic@example.com", Role::Viewer).await;
    let mut b = Browser::new(&server);
    assert_eq!(
        b.login("vic@example.com", PASSWORD).await.0,
        StatusCode::SEE_OTHER
    );
    let token = b.csrf_token().await;
    let flags = format!("{}/api/v1/projects/demo/flags", b.url);
    let (status, _, _) = b.send(b.client.get(&flags)).await;
    assert_eq!(status, StatusCode::OK);
    let flag = serde_json::json!({"key": "new-flag", "name": "New", "kind": "boolean"});
    let (status, _, body) = b
        .send(
            b.client
                .post(&flags)
                .header("x-csrf-token", &token)
                .json(&flag),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(server.store.get_flag("demo", "new-flag").await.is_err());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_ends_the_session_and_needs_the_csrf_token() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, "ann@example.com", Role::Admin).await;
    let mut b = Browser::new(&server);
    let (status, headers, _) = b.login("ann@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers["location"], "/ui",
        "signing in leads to the start page"
    );
    // Every page carries the sign-out form with the session's token.
    let (status, _, page) = b
        .send(b.client.get(format!("{}/ui/p/demo/flags", b.url)))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let old = b.cookies["sy_session"].clone();
    let logout = format!("{}/ui/logout", b.url);
    // A forged sign-out (no token) is refused, and the session lives on.
    let (status, _, _) = b.send(b.client.post(&logout)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = b
        .send(b.client.post(&logout).form(&[("csrf", "0".repeat(64))]))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(b.session().await.0, StatusCode::OK);
    // The page's own sign-out form carries the token.
    let csrf = csrf_field(&page);
    let (status, headers, _) = b.send(b.client.post(&logout).form(&[("csrf", csrf)])).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/ui/login");
    assert!(
        !b.cookies.contains_key("sy_session"),
        "the cookie is cleared"
    );
    // The old cookie is dead everywhere.
    b.cookies.insert("sy_session".into(), old);
    assert_eq!(b.session().await.0, StatusCode::UNAUTHORIZED);
    let (status, _, _) = b
        .send(b.client.get(format!("{}/api/v1/projects", b.url)))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_expires_after_its_time_to_live() {
    let config = ServerConfig {
        ui: UiConfig {
            session_ttl: Duration::from_secs(1),
            ..UiConfig::default()
        },
        ..ServerConfig::default()
    };
    let server = start_with(Backend::Sqlite, config).await;
    add_user(&server, "ann@example.com", Role::Admin).await;
    let mut b = Browser::new(&server);
    assert_eq!(
        b.login("ann@example.com", PASSWORD).await.0,
        StatusCode::SEE_OTHER
    );
    assert_eq!(b.session().await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(b.session().await.0, StatusCode::UNAUTHORIZED);
    let (status, _, _) = b
        .send(b.client.get(format!("{}/api/v1/projects", b.url)))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

/// Log lines, captured for the whole test binary.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_never_appears_in_logs_or_responses() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = start(Backend::Sqlite).await;
    add_user(&server, "ann@example.com", Role::Admin).await;
    let mut b = Browser::new(&server);
    let (_, _, failed) = b.login("ann@example.com", "wrong-but-secret-guess").await;
    let (status, _, ok) = b.login("ann@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, session) = b.session().await;
    let users = server.store.list_users().await.unwrap();
    server.stop().await;

    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(logs.contains("signed in"), "the sign-in is logged: {logs}");
    for text in [
        &logs,
        &failed,
        &ok,
        &session.to_string(),
        &format!("{users:?}"),
    ] {
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(!text.contains("wrong-but-secret-guess"), "{text}");
        assert!(!text.contains("$argon2id$"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_time_setup_link_creates_the_first_admin_once() {
    let server = start(Backend::Sqlite).await;
    let token = switchyard_server::ui::setup_link(&server.state)
        .await
        .unwrap()
        .expect("no user yet: a link");
    let mut b = Browser::new(&server);
    let setup = format!("{}/ui/setup", b.url);
    // A wrong token: nothing to see, nothing created.
    let (status, _, _) = b.send(b.client.get(format!("{setup}?token=nope"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, html) = b.send(b.client.get(format!("{setup}?token={token}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<label for=\"password\">"));
    let client = b.client.clone();
    let post = |email: &str, password: &str, token: &str| {
        client
            .post(&setup)
            .form(&[("email", email), ("password", password), ("token", token)])
    };
    let (status, _, _) = b.send(post("ann@example.com", PASSWORD, "nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // From another site: refused.
    let req = post("ann@example.com", PASSWORD, &token).header("origin", "https://evil.example");
    let (status, _, _) = b.send(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A short password is refused, naming the rule, and the link still works.
    let (status, _, html) = b.send(post("ann@example.com", "short", &token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("at least 10 characters"), "{html}");
    assert!(server.store.list_users().await.unwrap().is_empty());

    let (status, headers, _) = b.send(post("ann@example.com", PASSWORD, &token)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/ui/login");
    let users = server.store.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].role, Role::Admin);
    assert_eq!(users[0].project, None);
    // Spent: a second use creates nobody, and no new link is made.
    let (status, _, _) = b.send(post("eve@example.com", PASSWORD, &token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(server.store.list_users().await.unwrap().len(), 1);
    assert!(
        switchyard_server::ui::setup_link(&server.state)
            .await
            .unwrap()
            .is_none()
    );
    // The new admin signs in.
    assert_eq!(
        b.login("ann@example.com", PASSWORD).await.0,
        StatusCode::SEE_OTHER
    );
    server.stop().await;
}
