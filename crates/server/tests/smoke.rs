//! The server starts on both backends and answers its operations routes.

mod common;

use common::{BACKENDS, start};

#[tokio::test]
async fn the_server_starts_on_both_backends_and_reports_health() {
    for backend in BACKENDS {
        let server = start(backend).await;
        let client = reqwest::Client::new();
        let r = client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{backend:?}");
        let r = client
            .get(format!("{}/readyz", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{backend:?}");
        let r = client
            .get(format!("{}/nope", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
        let text = server.metrics_text().await;
        assert!(text.contains("switchyard_http_requests_total"), "{text}");
        assert!(
            server.state.snapshots.get("demo", "production").is_some(),
            "demo snapshot loaded on {backend:?}"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn a_resync_that_finds_nothing_new_keeps_the_snapshot_and_wakes_no_stream() {
    let server = start(common::Backend::Sqlite).await;
    let slot = server.state.snapshots.get("demo", "production").unwrap();
    let before = slot.load();
    let mut rx = slot.subscribe();
    rx.borrow_and_update();
    server.state.snapshots.reload_all().await.unwrap();
    let slot = server.state.snapshots.get("demo", "production").unwrap();
    assert!(std::sync::Arc::ptr_eq(&before, &slot.load()), "recompiled");
    assert!(!rx.has_changed().unwrap(), "streams woken for nothing");
    server.stop().await;
}
