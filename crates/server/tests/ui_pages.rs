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
