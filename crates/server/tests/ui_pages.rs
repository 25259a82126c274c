//! The web UI in a real headless Chromium: signing in, the frame, and what
//! a signed-out browser sees.

mod common;

use common::browser::{Browser, PASSWORD, add_user};
use common::{Backend, start};
use switchyard_store::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_leads_to_the_flags_of_the_first_project_and_back_to_the_page_asked_for() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, "ann@example.com", Role::Editor).await;
    let b = Browser::open(&server).await;

    // Signed out, a page sends the browser to sign in, then back to it.
    b.goto("/ui/p/demo/flags?q=checkout").await;
    b.wait_for_path("/ui/login").await;
    b.screenshot("sign-in", true).await;
    b.fill("#email", "ann@example.com").await;
    b.fill("#password", "wrong password here").await;
    b.click("form button[type=submit]").await;
    b.wait_for_text("[role=alert]", "wrong").await;
    b.fill("#email", "ann@example.com").await;
    b.fill("#password", PASSWORD).await;
    b.click("form button[type=submit]").await;
    b.wait_for_path("/ui/p/demo/flags?q=checkout").await;
    b.wait_for_text("main", "checkout").await;

    // With several projects, the start page is the list of projects.
    b.goto("/").await;
    b.wait_for_path("/ui/projects").await;
    b.goto("/ui/p/demo/flags").await;
    let text = b.wait_for_text("main", "Flags").await;
    assert!(
        text.contains("New flag"),
        "an editor sees the create button: {text}"
    );
    b.screenshot("flags", true).await;

    // Keyboard users: the first Tab reaches the link that skips the
    // navigation, and the focused element is visibly outlined.
    b.find("body").await.send_keys("\u{E004}").await.unwrap();
    let focused = b
        .eval(
            "const e = document.activeElement; const s = getComputedStyle(e); \
             return [e.className, s.outlineStyle, s.outlineWidth];",
        )
        .await;
    assert_eq!(focused[0], "skip", "{focused}");
    assert_ne!(focused[1], "none", "focus is visible: {focused}");
    let problems = b.accessibility_problems().await;
    assert!(problems.is_empty(), "{problems:#?}");

    // Signing out ends the session: pages send the browser to sign in.
    b.click("header form button[type=submit]").await;
    b.wait_for_path("/ui/login").await;
    b.goto("/ui/p/demo/flags").await;
    b.wait_for_path("/ui/login").await;
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_create_button_and_a_post_without_the_csrf_token_is_refused() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, "vic@example.com", Role::Viewer).await;
    let b = Browser::open(&server).await;
    b.sign_in("vic@example.com", PASSWORD).await;
    b.goto("/ui/p/demo/flags").await;
    let text = b.wait_for_text("main", "Flags").await;
    assert!(
        !text.contains("New flag"),
        "a viewer sees no create button: {text}"
    );

    // A script on the page that leaves out the CSRF token is refused, even
    // with the session cookie.
    let status = b
        .eval(
            "return fetch('/api/v1/projects/demo/flags', {method: 'POST', credentials: 'same-origin', \
             headers: {'Content-Type': 'application/json'}, body: '{}'}).then(r => r.status)",
        )
        .await;
    assert_eq!(status, 403);
    b.close().await;
    server.stop().await;
}

/// The flag list is served from memory while the project's revision
/// holds: a change through the API shows at once, and a project deleted
/// and made again (its revision counting up anew) never shows the old
/// project's flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flag_list_shows_every_change_at_once_even_for_a_project_made_again() {
    let server = start(Backend::Sqlite).await;
    add_user(&server, "ann@example.com", Role::Admin).await;
    let user = server
        .store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.email == "ann@example.com")
        .unwrap();
    let session = server
        .store
        .create_session(&user.id, time::Duration::hours(1))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let page = |project: &'static str| {
        let http = http.clone();
        let url = format!("{}/ui/p/{project}/flags", server.url);
        let cookie = format!("sy_session={}", session.token);
        async move {
            let r = http.get(url).header("cookie", cookie).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let api = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        http.request(method, format!("{}/api/v1{path}", server.url))
            .bearer_auth(&server.admin_key)
            .json(&body)
    };
    let flag = |key: &str, name: &str| {
        serde_json::json!({"key": key, "name": name, "type": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]})
    };
    let ok = |r: reqwest::Response| {
        assert!(r.status().is_success(), "{}", r.status());
        r
    };
    ok(api(
        reqwest::Method::POST,
        "/projects",
        serde_json::json!({"key": "again", "name": "Again"}),
    )
    .send()
    .await
    .unwrap());
    ok(api(
        reqwest::Method::POST,
        "/projects/again/flags",
        flag("old-flag", "Old flag"),
    )
    .send()
    .await
    .unwrap());
    assert!(page("again").await.contains("Old flag"));
    // A rename shows on the next load.
    ok(api(
        reqwest::Method::PUT,
        "/projects/again/flags/old-flag",
        flag("old-flag", "Renamed flag"),
    )
    .header("if-match", "\"1\"")
    .send()
    .await
    .unwrap());
    let html = page("again").await;
    assert!(
        html.contains("Renamed flag") && !html.contains("Old flag"),
        "{html}"
    );
    let (created, revision) = server.store.project_revision("again").await.unwrap();

    // Deleted and made again: the new project's flags, never the old's.
    ok(api(
        reqwest::Method::DELETE,
        "/projects/again",
        serde_json::json!({}),
    )
    .header("if-match", "\"1\"")
    .send()
    .await
    .unwrap());
    ok(api(
        reqwest::Method::POST,
        "/projects",
        serde_json::json!({"key": "again", "name": "Again"}),
    )
    .send()
    .await
    .unwrap());
    ok(api(
        reqwest::Method::POST,
        "/projects/again/flags",
        flag("new-0", "New flag"),
    )
    .send()
    .await
    .unwrap());
    assert_ne!(
        server.store.project_revision("again").await.unwrap(),
        (created, revision)
    );
    let html = page("again").await;
    assert!(
        !html.contains("Renamed flag"),
        "the old project's flags: {html}"
    );
    assert!(html.contains("New flag"), "{html}");
    server.stop().await;
}
