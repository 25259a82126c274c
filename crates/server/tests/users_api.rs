//! `/api/v1/users`: organisation admins add, list and disable the people
//! who sign in to the web UI; bad input is refused naming the field, the
//! password is never echoed or logged, and a disabled person's sessions end.

mod common;

use std::sync::{Arc, Mutex};

use common::{Backend, TestServer, start};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_store::{AuditFilter, Role, UserInput};

const PASSWORD: &str = "a long initial password";

fn api(server: &TestServer, method: Method, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(method, format!("{}/api/v1{path}", server.url))
        .bearer_auth(&server.admin_key)
}

async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value, String) {
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

/// A session for `email` (made in the store), as a cookie header value,
/// and its CSRF token.
async fn session_of(server: &TestServer, email: &str) -> (String, String) {
    let user = server
        .store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.email == email)
        .unwrap();
    let made = server
        .store
        .create_session(&user.id, time::Duration::hours(1))
        .await
        .unwrap();
    let cookie = format!("sy_session={}", made.token);
    let (status, body, _) = send(
        reqwest::Client::new()
            .get(format!("{}/ui/session", server.url))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (cookie, body["csrf_token"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_lists_and_disables_people_and_each_change_is_audited() {
    let server = start(Backend::Sqlite).await;
    let (status, made, text) = send(api(&server, Method::POST, "/users").json(&json!({
        "email": "  Ann@Example.com ", "password": PASSWORD, "role": "editor", "project": "demo"
    })))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert_eq!(made["email"], "ann@example.com");
    assert_eq!(made["role"], "editor");
    assert_eq!(made["project"], "demo");
    assert!(made["disabled_at"].is_null());
    assert!(made.get("password").is_none() && !text.contains(PASSWORD));

    // Every project: project omitted.
    let (status, all, _) = send(api(&server, Method::POST, "/users").json(&json!({
        "email": "bob@example.com", "password": PASSWORD, "role": "admin"
    })))
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(all["project"].is_null());

    // The same email in another case is taken.
    let (status, body, _) = send(api(&server, Method::POST, "/users").json(&json!({
        "email": "ANN@example.com", "password": PASSWORD, "role": "viewer"
    })))
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (status, list, _) = send(api(&server, Method::GET, "/users")).await;
    assert_eq!(status, StatusCode::OK);
    let emails: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["ann@example.com", "bob@example.com"]);

    assert!(
        server
            .store
            .check_login("ann@example.com", PASSWORD)
            .await
            .unwrap()
            .is_some(),
        "the new person can sign in"
    );
    let (status, gone, _) = send(api(&server, Method::DELETE, "/users/Ann@example.com")).await;
    assert_eq!(status, StatusCode::OK, "{gone}");
    assert!(gone["disabled_at"].is_string());
    assert!(
        server
            .store
            .check_login("ann@example.com", PASSWORD)
            .await
            .unwrap()
            .is_none(),
        "a disabled person cannot sign in"
    );
    // Again: nothing changes, still 200.
    let (status, _, _) = send(api(&server, Method::DELETE, "/users/ann@example.com")).await;
    assert_eq!(status, StatusCode::OK);

    let audit = server
        .store
        .list_audit(AuditFilter {
            resource_kind: Some("user".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|e| (e.action.as_str(), e.resource_key.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("disable", "ann@example.com"),
            ("create", "bob@example.com"),
            ("create", "ann@example.com")
        ]
    );
    assert!(audit.iter().all(|e| e.actor.starts_with("api_key:")));
    // The audit API filters by the kind too.
    let (status, listed, _) = send(api(&server, Method::GET, "/audit?resource_kind=user")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field() {
    let server = start(Backend::Sqlite).await;
    let cases = [
        (
            json!({"email": "ann@example.com", "password": "short", "role": "viewer"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "password",
        ),
        (
            json!({"email": "not an email", "password": PASSWORD, "role": "viewer"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            json!({"email": "ann@example.com", "password": PASSWORD, "role": "viewer", "project": "nope"}),
            StatusCode::BAD_REQUEST,
            "project",
        ),
        (
            json!({"email": "ann@example.com", "password": PASSWORD, "role": "viewer", "project": "Bad Key"}),
            StatusCode::BAD_REQUEST,
            "project",
        ),
        (
            json!({"email": "ann@example.com", "password": 12345678901234_u64, "role": "viewer"}),
            StatusCode::BAD_REQUEST,
            "password",
        ),
        (
            json!({"email": "ann@example.com", "password": PASSWORD, "role": "owner"}),
            StatusCode::BAD_REQUEST,
            "role",
        ),
        (
            json!({"email": "ann@example.com", "role": "viewer"}),
            StatusCode::BAD_REQUEST,
            "password",
        ),
        (
            json!({"email": "ann@example.com", "password": PASSWORD, "role": "viewer", "admin": true}),
            StatusCode::BAD_REQUEST,
            "admin",
        ),
    ];
    for (body, want, field) in cases {
        let (status, answer, text) = send(api(&server, Method::POST, "/users").json(&body)).await;
        assert_eq!(status, want, "{body} -> {text}");
        assert!(
            answer["error"]["field"].as_str() == Some(field)
                || answer["error"]["message"].as_str().unwrap().contains(field),
            "{body} -> {text}"
        );
        assert!(
            !text.contains(PASSWORD) && !text.contains("12345678901234"),
            "{text}"
        );
    }
    let (status, _, _) = send(
        api(&server, Method::POST, "/users")
            .header("content-type", "application/json")
            .body("{\"email\": "),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(server.store.list_users().await.unwrap().is_empty());
    let (status, _, _) = send(api(&server, Method::DELETE, "/users/nobody@example.com")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_persons_sessions_end_and_no_one_disables_themselves() {
    let server = start(Backend::Sqlite).await;
    for (email, role, project) in [
        ("root@example.com", Role::Admin, None),
        ("pat@example.com", Role::Admin, Some("demo")),
    ] {
        server
            .store
            .create_user(
                "system:test",
                UserInput {
                    email: email.into(),
                    password: PASSWORD.into(),
                    role,
                    project: project.map(str::to_string),
                },
            )
            .await
            .unwrap();
    }
    let (root, root_csrf) = session_of(&server, "root@example.com").await;
    let (pat, pat_csrf) = session_of(&server, "pat@example.com").await;
    let client = reqwest::Client::new();
    let as_person = |m: Method, path: &str, cookie: &str, csrf: &str| {
        client
            .request(m, format!("{}{path}", server.url))
            .header("cookie", cookie)
            .header("x-csrf-token", csrf)
    };

    // An admin of one project may not manage people.
    let (status, _, _) = send(as_person(Method::GET, "/api/v1/users", &pat, &pat_csrf)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Nor may anyone disable themselves.
    let (status, body, _) = send(as_person(
        Method::DELETE,
        "/api/v1/users/ROOT@example.com",
        &root,
        &root_csrf,
    ))
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Pat is signed in; disabled by root (a person: audited as them), Pat's
    // session ends at once.
    let (status, _, _) = send(as_person(Method::GET, "/api/v1/projects", &pat, &pat_csrf)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(as_person(
        Method::DELETE,
        "/api/v1/users/pat@example.com",
        &root,
        &root_csrf,
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(as_person(Method::GET, "/api/v1/projects", &pat, &pat_csrf)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(as_person(Method::GET, "/ui/session", &pat, &pat_csrf)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let audit = server
        .store
        .list_audit(AuditFilter {
            resource_kind: Some("user".into()),
            resource_key: Some("pat@example.com".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit[0].action, "disable");
    assert_eq!(audit[0].actor, "user:root@example.com");
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
async fn the_password_is_never_echoed_logged_or_audited() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = start(Backend::Sqlite).await;
    let secret = "a-very-secret-initial-pass";
    let mut answers = Vec::new();
    for body in [
        json!({"email": "ann@example.com", "password": secret, "role": "viewer"}),
        json!({"email": "ann@example.com", "password": secret, "role": "viewer"}),
        json!({"email": "bad", "password": secret, "role": "viewer"}),
        json!({"email": "x@example.com", "password": secret, "role": "nobody"}),
        json!({"email": "y@example.com", "password": secret, "role": "viewer", "project": "nope"}),
    ] {
        answers.push(
            send(api(&server, Method::POST, "/users").json(&body))
                .await
                .2,
        );
    }
    answers.push(send(api(&server, Method::GET, "/users")).await.2);
    let audit = server
        .store
        .list_audit(AuditFilter::default())
        .await
        .unwrap();
    answers.push(serde_json::to_string(&audit).unwrap());
    server.stop().await;
    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(!logs.is_empty());
    answers.push(logs);
    for text in &answers {
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains("$argon2id$"), "{text}");
    }
}
