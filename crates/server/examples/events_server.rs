//! A server with the embedded event log in a given directory, for the
//! event ingestion benchmark (`bench/events.sh`) until `switchyard serve`
//! opens the event log itself.
//!
//! `cargo run --release -p switchyard-server --example events_server -- DIR`
//! prints `READY http://ADDR SERVER_SDK_KEY` once it listens.

use std::sync::Arc;

fn main() {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "events-bench".into()),
    );
    let threads: usize = std::env::var("SWITCHYARD_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(async move {
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("data dir: {e}"));
        let url = format!("sqlite://{}", dir.join("config.db").display());
        let store = switchyard_store::open(&url)
            .await
            .unwrap_or_else(|e| panic!("store: {e}"));
        switchyard_store::bootstrap(store.as_ref(), true)
            .await
            .unwrap_or_else(|e| panic!("bootstrap: {e}"));
        let key = store
            .create_api_key(
                "bench",
                switchyard_store::ApiKeyInput {
                    name: "bench".into(),
                    kind: switchyard_store::ApiKeyKind::Server,
                    project: Some("demo".into()),
                    environment: Some("production".into()),
                },
            )
            .await
            .unwrap_or_else(|e| panic!("key: {e}"));
        let events = switchyard_events::Events::open(&dir.join("events"), Default::default())
            .await
            .unwrap_or_else(|e| panic!("event log: {e}"));
        let state = switchyard_server::AppState::new(store, Default::default())
            .await
            .unwrap_or_else(|e| panic!("state: {e}"))
            .with_events(Arc::new(events));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        println!("READY http://{addr} {}", key.secret);
        let _ = switchyard_server::run(listener, state, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    });
}
