//! An axum service that reads a flag per request and records a conversion:
//! the demo project's `checkout-flow` (an experiment in `development`) and
//! its `purchase` event.
//!
//! ```sh
//! switchyard serve --demo        # prints an admin key on first start
//! curl -s -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
//!   -d '{"name":"example","kind":"server","project":"demo","environment":"development"}' \
//!   http://127.0.0.1:8080/api/v1/api-keys          # -> "secret"
//! SWITCHYARD_KEY=<secret> cargo run -p switchyard-sdk --example axum_service
//! curl 'http://127.0.0.1:3000/checkout?user=ada'
//! curl -X POST 'http://127.0.0.1:3000/purchase?user=ada&amount=30'
//! ```

use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use serde::Deserialize;
use switchyard_sdk::{Client, Context};

#[derive(Deserialize)]
struct Visit {
    user: String,
    #[serde(default)]
    country: Option<String>,
}

#[derive(Deserialize)]
struct Purchase {
    user: String,
    amount: f64,
}

/// Which checkout this user sees. Reading the experiment flag logs the
/// exposure (once per user and hour), in the background.
async fn checkout(State(flags): State<Client>, Query(visit): Query<Visit>) -> String {
    let mut ctx = Context::with_key(visit.user.as_str());
    if let Some(country) = visit.country {
        ctx.set("country", country);
    }
    let flow = flags.string_value("checkout-flow", &ctx, "classic");
    format!("{}: the {flow} checkout\n", visit.user)
}

/// The conversion the experiment measures (metrics `purchase` and `revenue`).
async fn purchase(State(flags): State<Client>, Query(p): Query<Purchase>) -> &'static str {
    flags.track(&p.user, "purchase", Some(p.amount), None);
    "thank you\n"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("SWITCHYARD_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let key = std::env::var("SWITCHYARD_KEY")
        .map_err(|_| "set SWITCHYARD_KEY to a server SDK key (see the comment at the top)")?;
    let flags = Client::builder(url, key)
        .cache_file(std::env::temp_dir().join("switchyard-example-cache.json"))
        .build()?;
    if let Err(e) = flags.wait_until_ready(Duration::from_secs(5)).await {
        eprintln!("starting without a fresh configuration: {e}");
    }

    let app = Router::new()
        .route("/checkout", get(checkout))
        .route("/purchase", post(purchase))
        .with_state(flags.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    // Deliver the exposures and purchases still queued.
    flags.close().await;
    Ok(())
}
