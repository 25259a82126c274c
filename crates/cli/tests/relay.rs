//! `switchyard relay` between real processes on loopback: OpenFeature's
//! OFREP provider evaluates through a relay exactly as directly; a change
//! reaches a relay's clients, and a chained relay's, within a second; with
//! the upstream killed the relay serves its copy (also after its own
//! restart) and accepts events, then forwards every one of them once; a
//! revoked key stops working at the relay within seconds.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use common::{Relay, Server, start, start_relay};
use open_feature::{EvaluationContext, OpenFeature};
use open_feature_ofrep::{OfrepOptions, OfrepProvider};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use switchyard_sdk::{Client, Context};

const KILL_SWITCH: &str = "payments-kill-switch";

/// Awaits `check` every 20 ms until it holds or `limit` passes; the time
/// it took.
async fn until<F: Future<Output = bool>>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

async fn readyz(url: &str) -> Value {
    match reqwest::get(format!("{url}/readyz")).await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => Value::Null,
    }
}

async fn ready(relay: &Relay) {
    until(Duration::from_secs(20), "the relay is ready", || async {
        readyz(&relay.url()).await["status"] == "ready"
    })
    .await;
}

async fn ofrep_client(name: &str, base_url: String, key: &str) -> open_feature::Client {
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
    );
    let provider = OfrepProvider::new(OfrepOptions {
        base_url,
        headers,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut api = OpenFeature::singleton_mut().await;
    api.set_named_provider(name, provider).await;
    api.create_named_client(name)
}

/// Every flag of the demo project with its type.
async fn flag_types(server: &Server) -> Vec<(String, String)> {
    let (_, v) = server
        .api(reqwest::Method::GET, "/projects/demo/flags", None)
        .await;
    let items = v.as_array().or_else(|| v["items"].as_array()).unwrap();
    items
        .iter()
        .map(|f| {
            (
                f["key"].as_str().unwrap().to_string(),
                f["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// What an OpenFeature client says of `flag` for `ctx`, as text.
async fn resolve(
    client: &open_feature::Client,
    flag: &str,
    ty: &str,
    ctx: &EvaluationContext,
) -> String {
    match ty {
        "boolean" => format!("{:?}", client.get_bool_details(flag, Some(ctx), None).await),
        "string" => format!(
            "{:?}",
            client.get_string_details(flag, Some(ctx), None).await
        ),
        "number" => format!(
            "{:?}",
            client.get_float_details(flag, Some(ctx), None).await
        ),
        _ => format!(
            "{:?}",
            client
                .get_bool_details(flag, Some(ctx), None)
                .await
                .map(|d| d.variant)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_relay_openfeature_evaluates_as_directly_and_changes_arrive_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("server"), "127.0.0.1:0", None);
    let (_, relay_key) = server.key("server", "production").await;
    let (_, app_key) = server.key("server", "production").await;
    let (_, client_key) = server.key("client", "production").await;
    let relay = start_relay(
        &dir.path().join("relay"),
        "127.0.0.1:0",
        &server.url(),
        &[&relay_key],
        &[],
    );
    // A relay whose upstream is the first relay.
    let chained = start_relay(
        &dir.path().join("chained"),
        "127.0.0.1:0",
        &relay.url(),
        &[&relay_key],
        &[],
    );
    ready(&relay).await;
    ready(&chained).await;

    let direct = ofrep_client("direct", server.url(), &client_key).await;
    let via_relay = ofrep_client("relay", relay.url(), &client_key).await;
    let via_chain = ofrep_client("chained", chained.url(), &client_key).await;
    let flags = flag_types(&server).await;
    assert!(flags.len() >= 4, "{flags:?}");
    let contexts = [
        EvaluationContext::default().with_targeting_key("user-1"),
        EvaluationContext::default()
            .with_targeting_key("user-2")
            .with_custom_field("country", "NL")
            .with_custom_field("email", "ada@example.com"),
        EvaluationContext::default()
            .with_targeting_key("user-3")
            .with_custom_field("plan", "pro"),
    ];
    let mut compared = 0;
    for ctx in &contexts {
        for (flag, ty) in &flags {
            let want = resolve(&direct, flag, ty, ctx).await;
            assert_eq!(
                resolve(&via_relay, flag, ty, ctx).await,
                want,
                "{flag} through the relay"
            );
            assert_eq!(
                resolve(&via_chain, flag, ty, ctx).await,
                want,
                "{flag} through two relays"
            );
            compared += 1;
        }
    }
    let missing = direct
        .get_bool_details("no-such-flag", Some(&contexts[0]), None)
        .await;
    assert!(missing.is_err());
    assert_eq!(
        format!(
            "{:?}",
            via_relay
                .get_bool_details("no-such-flag", Some(&contexts[0]), None)
                .await
        ),
        format!("{missing:?}")
    );
    eprintln!("{compared} evaluations the same directly, through a relay and through two");

    // SDKs of the relays, with another server key of the environment.
    let sdk = Client::builder(relay.url(), &app_key).build().unwrap();
    let sdk_chained = Client::builder(chained.url(), &app_key).build().unwrap();
    for c in [&sdk, &sdk_chained] {
        c.wait_until_ready(Duration::from_secs(10)).await.unwrap();
    }
    until(Duration::from_secs(5), "the streams are up", || async {
        sdk.status().streaming && sdk_chained.status().streaming
    })
    .await;
    let user = Context::with_key("user-1");
    assert!(sdk.bool_value(KILL_SWITCH, &user, false));
    let ctx = &contexts[0];
    assert!(
        via_relay
            .get_bool_value(KILL_SWITCH, Some(ctx), None)
            .await
            .unwrap()
    );

    server.set_enabled(KILL_SWITCH, "production", false).await;
    let took = until(
        Duration::from_secs(1),
        "the relay's SDK sees the change",
        || async { !sdk.bool_value(KILL_SWITCH, &user, true) },
    )
    .await;
    eprintln!("change seen by an SDK of the relay after {took:?}");
    until(
        Duration::from_secs(1),
        "the chained relay's SDK sees the change",
        || async { !sdk_chained.bool_value(KILL_SWITCH, &user, true) },
    )
    .await;
    until(
        Duration::from_secs(1),
        "OFREP at the relay serves the change",
        || async {
            !via_relay
                .get_bool_value(KILL_SWITCH, Some(ctx), None)
                .await
                .unwrap_or(true)
        },
    )
    .await;
    sdk.close().await;
    sdk_chained.close().await;

    // Events sent to the chained relay go through the first one to the
    // server, once each, those without ids too.
    assert_eq!(
        post_events(
            &chained.url(),
            &client_key,
            &batch("relay-chained", 30, false)
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        post_events(
            &chained.url(),
            &client_key,
            &batch("relay-chained-ids", 20, true)
        )
        .await,
        StatusCode::OK
    );
    let want: BTreeMap<String, (usize, usize)> = [("relay-chained", 30), ("relay-chained-ids", 20)]
        .into_iter()
        .map(|(n, c)| (n.to_string(), (c, c)))
        .collect();
    until(
        Duration::from_secs(10),
        "events through two relays",
        || async { stored(&server).await == want },
    )
    .await;
}

/// Posts `events` to `url` with `key`; the status.
async fn post_events(url: &str, key: &str, events: &Value) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{url}/api/v1/events"))
        .bearer_auth(key)
        .json(events)
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::BAD_GATEWAY)
}

/// `n` tracked events named `name` for units `{name}-{i}`; with ids or
/// without.
fn batch(name: &str, n: usize, ids: bool) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                let mut e = json!({"type": "track", "unit": format!("{name}-{i}"), "name": name, "value": 1.0});
                if ids {
                    e["id"] = json!(format!("{name}-id-{i}"));
                }
                e
            })
            .collect(),
    )
}

/// How many stored events of each of our names, and whether every unit is
/// there once.
async fn stored(server: &Server) -> BTreeMap<String, (usize, usize)> {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in server.events("production").await {
        if let (Some(name), Some(unit)) = (e["name"].as_str(), e["unit"].as_str())
            && name.starts_with("relay-")
        {
            by_name
                .entry(name.to_string())
                .or_default()
                .push(unit.to_string());
        }
    }
    by_name
        .into_iter()
        .map(|(name, units)| {
            let distinct: std::collections::BTreeSet<&String> = units.iter().collect();
            (name, (units.len(), distinct.len()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_upstream_down_a_relay_serves_and_accepts_then_forwards_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let relay_dir = dir.path().join("relay");
    let server = start(&server_dir, "127.0.0.1:0", None);
    let (addr, admin) = (server.addr.clone(), server.admin.clone());
    let (_, relay_key) = server.key("server", "production").await;
    let (_, client_key) = server.key("client", "production").await;
    let extra = ["--forward-retry-max", "500ms"];
    let relay = start_relay(
        &relay_dir,
        "127.0.0.1:0",
        &server.url(),
        &[&relay_key],
        &extra,
    );
    let relay_addr = relay.addr.clone();
    ready(&relay).await;
    let evaluate = |url: String| {
        let key = client_key.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/ofrep/v1/evaluate/flags/{KILL_SWITCH}"))
                .bearer_auth(&key)
                .json(&json!({"context": {"targetingKey": "user-1"}}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap_or_default())
        }
    };
    let (status, direct) = evaluate(server.url()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        post_events(&relay.url(), &client_key, &batch("relay-before", 50, true)).await,
        StatusCode::OK
    );
    until(
        Duration::from_secs(10),
        "forwarded while the upstream is up",
        || async { stored(&server).await.get("relay-before") == Some(&(50, 50)) },
    )
    .await;

    drop(server); // SIGKILL
    until(
        Duration::from_secs(10),
        "the relay reports its copy stale",
        || async { readyz(&relay.url()).await["status"] == "degraded" },
    )
    .await;
    let (status, served) = evaluate(relay.url()).await;
    assert_eq!(
        (status, &served),
        (StatusCode::OK, &direct),
        "the relay serves its copy"
    );
    assert_eq!(
        post_events(&relay.url(), &client_key, &batch("relay-down", 60, true)).await,
        StatusCode::OK
    );
    assert_eq!(
        post_events(
            &relay.url(),
            &client_key,
            &batch("relay-down-no-id", 40, false)
        )
        .await,
        StatusCode::OK
    );

    // The relay restarts while the upstream is still down: it serves what
    // it kept on disk, and keeps what it had not forwarded.
    drop(relay);
    let relay = start_relay(
        &relay_dir,
        &relay_addr,
        &format!("http://{addr}"),
        &[&relay_key],
        &extra,
    );
    let (status, served) = evaluate(relay.url()).await;
    assert_eq!(
        (status, &served),
        (StatusCode::OK, &direct),
        "served from the disk copy"
    );
    let rz = readyz(&relay.url()).await;
    assert_eq!(rz["status"], "degraded", "{rz}");
    assert_eq!(rz["checks"]["upstream"]["environments"]["stale"], 1, "{rz}");
    assert_eq!(
        post_events(
            &relay.url(),
            &client_key,
            &batch("relay-restarted", 30, false)
        )
        .await,
        StatusCode::OK
    );

    let server = start(&server_dir, &addr, Some(&admin));
    let want: BTreeMap<String, (usize, usize)> = [
        ("relay-before", 50),
        ("relay-down", 60),
        ("relay-down-no-id", 40),
        ("relay-restarted", 30),
    ]
    .into_iter()
    .map(|(n, c)| (n.to_string(), (c, c)))
    .collect();
    let took = until(Duration::from_secs(30), "every event forwarded", || async {
        stored(&server).await == want
    })
    .await;
    eprintln!("the relay's backlog reached the upstream {took:?} after it returned");
    ready(&relay).await;
    // Nothing arrives twice later either.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stored(&server).await, want);
    let rz = readyz(&relay.url()).await;
    assert_eq!(
        rz["checks"]["upstream"]["forwarding"]["pending_bytes"], 0,
        "{rz}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_upstream_stops_working_at_the_relay_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("server"), "127.0.0.1:0", None);
    let (relay_id, relay_key) = server.key("server", "production").await;
    let (app_id, app_key) = server.key("server", "production").await;
    let (client_id, client_key) = server.key("client", "production").await;
    // Key lists every 2 s: the relay's own key is taken out of service
    // after three refusals in a row.
    let relay = start_relay(
        &dir.path().join("relay"),
        "127.0.0.1:0",
        &server.url(),
        &[&relay_key],
        &["--key-refresh", "2s"],
    );
    ready(&relay).await;
    let http = reqwest::Client::new();
    let evaluate = |key: String| {
        let (http, url) = (http.clone(), relay.url());
        async move {
            http.post(format!("{url}/ofrep/v1/evaluate/flags/{KILL_SWITCH}"))
                .bearer_auth(&key)
                .json(&json!({"context": {"targetingKey": "user-1"}}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(evaluate(client_key.clone()).await, StatusCode::OK);
    // A key the relay never saw is refused without asking the upstream.
    assert_eq!(
        evaluate("sy_client_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()).await,
        StatusCode::UNAUTHORIZED
    );
    let stream = http
        .get(format!("{}/sdk/v1/stream", relay.url()))
        .bearer_auth(&app_key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut body = Box::pin(stream.bytes_stream());

    server.revoke(&client_id).await;
    server.revoke(&app_id).await;
    let took = until(
        Duration::from_secs(10),
        "the revoked client key is refused",
        || {
            let status = evaluate(client_key.clone());
            async move { status.await == StatusCode::UNAUTHORIZED }
        },
    )
    .await;
    eprintln!("a revoked key was refused at the relay after {took:?}");
    // The revoked server key's stream ends.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = body.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream of a revoked key goes on");

    // Revoking the relay's own key takes its environment out of service.
    server.revoke(&relay_id).await;
    until(
        Duration::from_secs(15),
        "the relay reports the refusal",
        || async {
            let rz = readyz(&relay.url()).await;
            rz["checks"]["upstream"]["environments"]["refused"] == 1
        },
    )
    .await;
    let (_, other_client) = server.key("client", "production").await;
    assert_eq!(evaluate(other_client).await, StatusCode::UNAUTHORIZED);
}
