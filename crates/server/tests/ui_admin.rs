//! The organisation pages in a real headless Chromium: projects and
//! environments, API keys (the secret shown once), people, the audit log
//! with its diffs, rejected events and their replay; and what a viewer
//! sees of them. Every change goes through the JSON API from the page.

mod common;

use std::time::Duration;

use common::browser::{Browser, PASSWORD, add_user, add_user_in};
use common::{Backend, TestServer, start};
use serde_json::{Value, json};
use switchyard_store::Role;

const ADMIN: &str = "ada@example.com";

/// Clicks `css`, which asks for confirmation, and accepts; the question
/// is returned.
async fn click_confirm(b: &Browser, css: &str) -> String {
    b.click(css).await;
    for _ in 0..50 {
        if let Ok(text) = b.client.get_alert_text().await {
            b.client
                .accept_alert()
                .await
                .expect("accept the confirmation");
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} asked for no confirmation");
}

/// The page has no problem the accessibility check finds.
async fn accessible(b: &Browser, page: &str) {
    let problems = b.accessibility_problems().await;
    assert!(problems.is_empty(), "{page}: {problems:?}");
}

async fn admin_api(server: &TestServer, method: reqwest::Method, path: &str) -> Value {
    reqwest::Client::new()
        .request(method, format!("{}/api/v1{path}", server.url))
        .bearer_auth(&server.admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn sdk_config_status(server: &TestServer, secret: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/sdk/v1/config", server.url))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_a_server_key_sees_its_secret_once_and_revokes_it() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, ADMIN, Role::Admin).await;
    let b = Browser::open(&server).await;
    b.sign_in(ADMIN, PASSWORD).await;
    b.goto("/ui/keys").await;
    b.wait_for_text("#keys", "Active").await;
    accessible(&b, "keys").await;

    // A server key without a project: the API's error, next to the field.
    b.click("#new-key summary").await;
    b.fill("#key-name", "checkout service").await;
    b.select("#key-kind", "server").await;
    b.select("#key-project", "").await;
    b.click("#new-key button[type=submit]").await;
    b.wait_for_text("#new-key .form-alert", "need a project")
        .await;
    assert_eq!(
        b.eval("return document.querySelector('#key-project').getAttribute('aria-invalid')")
            .await,
        "true"
    );

    b.screenshot("keys-error", false).await;
    b.select("#key-project", "demo").await;
    b.select("#key-env-demo", "production").await;
    b.click("#new-key button[type=submit]").await;
    let secret = b.wait_for_text("#secret .secret", "sy_").await;
    let secret = secret.trim().to_string();
    assert!(
        !secret.is_empty() && !secret.contains(char::is_whitespace),
        "{secret:?}"
    );
    assert!(b.text("#secret").await.contains("only this once"));
    b.screenshot("keys-secret", true).await;
    assert_eq!(sdk_config_status(&server, &secret).await, 200);

    // Reloaded: the key is listed, its secret is gone for good.
    b.goto("/ui/keys").await;
    let table = b.wait_for_text("#keys", "checkout service").await;
    assert!(
        table.contains("server SDK") && table.contains("demo / production"),
        "{table}"
    );
    assert!(!b.body_text().await.contains(&secret));
    let html = b.eval("return document.documentElement.outerHTML").await;
    assert!(!html.as_str().unwrap().contains(&secret));
    b.screenshot("keys", true).await;

    let keys = admin_api(&server, reqwest::Method::GET, "/api-keys").await;
    let id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "checkout service")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let row = format!("tr[data-key-id='{id}']");
    let question = click_confirm(&b, &format!("{row} button.danger")).await;
    assert!(question.contains("checkout service"), "{question}");
    b.wait_for_text(&row, "Revoked").await;
    assert!(!b.exists(&format!("{row} button")).await);
    assert_eq!(sdk_config_status(&server, &secret).await, 401);
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_renames_and_deletes_an_environment_and_the_audit_log_shows_the_diff() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, ADMIN, Role::Admin).await;
    let b = Browser::open(&server).await;
    b.sign_in(ADMIN, PASSWORD).await;
    b.goto("/ui/projects").await;
    b.wait_for_text("#project-demo", "production").await;
    accessible(&b, "projects").await;
    b.screenshot("projects", true).await;

    // A bad key: the API's message next to the key field.
    let form = "#project-demo form[data-api='/api/v1/projects/demo/environments']";
    b.fill("#new-env-name-demo", "Staging").await;
    b.fill("#new-env-key-demo", "Bad Key").await;
    b.click(&format!("{form} button[type=submit]")).await;
    b.wait_for_text(&format!("{form} .field-error"), "must be 1 to 64")
        .await;
    b.fill("#new-env-key-demo", "staging").await;
    b.click(&format!("{form} button[type=submit]")).await;
    b.wait_for_text("#project-demo table", "staging").await;
    assert_eq!(
        server
            .store
            .get_environment("demo", "staging")
            .await
            .unwrap()
            .name,
        "Staging"
    );

    // Rename it.
    b.click("#project-demo tr:last-child details summary").await;
    b.screenshot("projects-rename", true).await;
    b.fill("#env-name-demo-staging", "Staging EU").await;
    b.click("#project-demo tr:last-child form button[type=submit]")
        .await;
    b.wait_for_text("#project-demo table", "Staging EU").await;

    // The audit log: the rename, by this person, with its diff.
    b.goto("/ui/audit?project=demo&kind=environment&key=staging")
        .await;
    let main = b
        .wait_for_text("#audit-entries", &format!("user:{ADMIN}"))
        .await;
    assert!(main.contains("update") && main.contains("create"), "{main}");
    let first = "#audit-entries article:first-child";
    assert!(b.text(&format!("{first} .diff .del")).await.contains("- "));
    assert!(
        b.text(&format!("{first} .diff .del"))
            .await
            .contains("\"Staging\"")
    );
    assert!(b.text(&format!("{first} .diff .add")).await.contains("+ "));
    assert!(
        b.text(&format!("{first} .diff .add"))
            .await
            .contains("\"Staging EU\"")
    );
    accessible(&b, "audit").await;
    b.screenshot("audit", true).await;

    // Delete it, after a clear question.
    b.goto("/ui/projects").await;
    b.click("#project-demo tr:last-child details summary").await;
    let question = click_confirm(&b, "#project-demo tr:last-child button.danger").await;
    assert!(
        question.contains("Staging EU") && question.contains("cannot be undone"),
        "{question}"
    );
    b.wait_gone("#env-name-demo-staging").await;
    assert!(
        server
            .store
            .get_environment("demo", "staging")
            .await
            .is_err()
    );

    // A new project.
    b.click("#new-project summary").await;
    b.fill("#project-name", "Payments").await;
    b.fill("#project-key", "payments").await;
    b.click("#new-project button[type=submit]").await;
    b.wait_for_text("#project-payments", "Payments").await;
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_a_person_who_can_then_sign_in_and_disables_them() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, ADMIN, Role::Admin).await;
    let b = Browser::open(&server).await;
    b.sign_in(ADMIN, PASSWORD).await;
    b.goto("/ui/users").await;
    b.wait_for_text("#people", ADMIN).await;
    accessible(&b, "people").await;
    b.click("#new-person summary").await;
    b.fill("#user-email", "pam@example.com").await;
    b.fill("#user-password", "short").await;
    b.select("#user-role", "viewer").await;
    b.select("#user-project", "demo").await;
    // The browser's own check would stop a short password first: ask the server.
    b.eval("document.querySelector('#new-person form').noValidate = true; return 1")
        .await;
    b.click("#new-person button[type=submit]").await;
    b.wait_for_text("#new-person .field-error", "10 characters")
        .await;
    b.fill("#user-password", "pam's first password").await;
    b.click("#new-person button[type=submit]").await;
    let people = b.wait_for_text("#people", "pam@example.com").await;
    assert!(people.contains("viewer"), "{people}");
    assert!(!b.body_text().await.contains("pam's first password"));
    b.screenshot("people", true).await;

    // Pam signs in, sees demo, and no People page.
    b.click("header form button[type=submit]").await;
    b.wait_for_path("/ui/login").await;
    b.sign_in("pam@example.com", "pam's first password").await;
    b.wait_for_path("/ui/p/demo/flags").await;
    b.goto("/ui/users").await;
    b.wait_for_text("main", "Only organisation admins").await;
    b.click("header form button[type=submit]").await;
    b.wait_for_path("/ui/login").await;

    // Disabled: Pam can no longer sign in.
    b.sign_in(ADMIN, PASSWORD).await;
    b.goto("/ui/users").await;
    b.wait_for_text("#people", "pam@example.com").await;
    let question = click_confirm(&b, "#people button.danger").await;
    assert!(question.contains("pam@example.com"), "{question}");
    b.wait_for_text("#people", "Disabled").await;
    assert!(
        server
            .store
            .check_login("pam@example.com", "pam's first password")
            .await
            .unwrap()
            .is_none()
    );
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_page_lists_a_rejected_event_escaped_and_replays() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, ADMIN, Role::Admin).await;
    let made: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/api-keys", server.url))
        .bearer_auth(&server.admin_key)
        .json(&json!({"name": "events", "kind": "server", "project": "demo", "environment": "production"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bad = json!([{"type": "track", "unit": "<b>u</b>", "name": "n", "time": 5}]);
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/events", server.url))
        .bearer_auth(made["secret"].as_str().unwrap())
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let b = Browser::open(&server).await;
    b.sign_in(ADMIN, PASSWORD).await;
    b.goto("/ui/events/dead-letters?project=demo").await;
    let letters = b.wait_for_text("#letters", "invalid_time").await;
    assert!(letters.contains("demo / production"), "{letters}");
    b.click("#letters details summary").await;
    let raw = b.text("#letters pre").await;
    assert!(
        raw.contains("<b>u</b>"),
        "the raw event is shown as text: {raw}"
    );
    assert!(!b.exists("#letters b").await, "and never as markup");
    accessible(&b, "dead letters").await;
    b.screenshot("dead-letters", true).await;

    let question = click_confirm(&b, "main .head button.primary").await;
    assert!(question.contains("demo"), "{question}");
    b.wait_for_path("/ui/events/dead-letters?project=demo&done=0")
        .await;
    b.wait_for_text("main [role=status]", "0 events replayed")
        .await;
    // Still invalid: still listed.
    b.wait_for_text("#letters", "invalid_time").await;
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_these_pages_without_any_control() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, "vic@example.com", Role::Viewer).await;
    let b = Browser::open(&server).await;
    b.sign_in("vic@example.com", PASSWORD).await;
    let controls = "main button, main form[data-api], main [data-call]";

    b.goto("/ui/projects").await;
    b.wait_for_text("#project-demo", "production").await;
    assert!(!b.exists(controls).await, "no controls on projects");

    b.goto("/ui/keys").await;
    b.wait_for_text("main", "Only admins").await;
    accessible(&b, "keys (viewer)").await;
    assert!(!b.exists(controls).await, "no controls on keys");
    assert!(!b.body_text().await.contains("sy_admin"), "no key listed");
    b.screenshot("keys-viewer", false).await;

    b.goto("/ui/users").await;
    b.wait_for_text("main", "Only organisation admins").await;
    assert!(!b.exists("a[href='/ui/users']").await, "no People link");

    b.goto("/ui/audit").await;
    b.wait_for_text("#audit-entries", "system:").await;
    assert!(!b.exists("main [data-call], main form[data-api]").await);

    // Paging: 55 changes are 50 on the first page, 5 older.
    for i in 0..55 {
        server
            .store
            .create_environment(
                "system:test",
                "demo",
                switchyard_store::EnvironmentInput {
                    key: format!("e{i}"),
                    name: format!("E{i}"),
                },
            )
            .await
            .unwrap();
    }
    b.goto("/ui/audit?project=demo&kind=environment").await;
    b.wait_for_text("#audit-entries", "e54").await;
    assert_eq!(b.find_all("#audit-entries article").await.len(), 50);
    b.click("main a.button").await;
    b.wait_for_path("/ui/audit?project=demo&kind=environment&before_id=")
        .await;
    let older = b.wait_for_text("#audit-entries", "e0").await;
    assert!(!older.contains("e54"), "{older}");
    // The five older ones, and the demo's own environments from the bootstrap.
    assert!(b.find_all("#audit-entries article").await.len() >= 5);

    b.goto("/ui/events/dead-letters").await;
    b.wait_for_text("main", "No rejected events").await;
    assert!(!b.exists("main [data-call]").await, "no replay button");
    b.goto("/ui/events/dead-letters?project=nope").await;
    b.wait_for_text("main", "No such project").await;

    // An admin of one project manages that project's keys only.
    b.click("header form button[type=submit]").await;
    b.wait_for_path("/ui/login").await;
    add_user_in(&server, "pat@example.com", Role::Admin, Some("demo")).await;
    b.sign_in("pat@example.com", PASSWORD).await;
    // The navigation offers their keys page.
    b.click("nav.side a[href='/ui/keys']").await;
    b.wait_for_text("main", "API keys").await;
    let text = b.body_text().await;
    assert!(!text.contains("bootstrap admin"), "{text}");
    assert!(!b.exists("#key-project option[value='']").await);
    b.goto("/ui/users").await;
    b.wait_for_text("main", "Only organisation admins").await;
    b.goto("/ui/audit?project=other").await;
    b.wait_for_text("main", "Audit log").await;
    assert!(
        !b.exists("#audit-project option[value='']").await,
        "bound to demo: no 'every project'"
    );
    b.close().await;
    server.stop().await;
}
