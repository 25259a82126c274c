//! SIGKILL test of the aggregator: events are sent while the server (and
//! the aggregator in it) is killed with SIGKILL at random moments and
//! restarted; then the results must equal those of an uninterrupted run
//! over the same stored events (a fresh aggregator on a copy of the data
//! without the checkpoint). No event counted twice or lost.
//!
//! The server process is this test binary, started again with
//! `SWITCHYARD_AGG_CRASH_DIR` set, running only [`agg_crash_server_process`].
//! `SWITCHYARD_AGG_CRASH_KILLS` sets the number of kills (default 12).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

const DIR_VAR: &str = "SWITCHYARD_AGG_CRASH_DIR";
const RESULTS: &str =
    "/api/v1/projects/demo/environments/development/experiments/crash-exp/results";

/// The server side: runs only when spawned by the test.
#[test]
fn agg_crash_server_process() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let dir = std::path::PathBuf::from(dir);
        let url = format!("sqlite://{}", dir.join("config.db").display());
        let store = switchyard_store::open(&url).await.unwrap();
        let events = switchyard_events::Events::open(&dir.join("events"), Default::default())
            .await
            .unwrap();
        let mut cfg =
            switchyard_server::aggregation::AggregationConfig::new(dir.join("aggregator"));
        cfg.checkpoint_interval = Duration::from_millis(25);
        cfg.poll_interval = Duration::from_millis(5);
        cfg.read_bytes = 16 << 10;
        let agg = switchyard_server::aggregation::Aggregation::open(cfg).unwrap();
        let state = switchyard_server::AppState::new(store, Default::default())
            .await
            .unwrap()
            .with_events(Arc::new(events))
            .with_aggregation(agg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("AGG_CRASH_READY http://{}", listener.local_addr().unwrap());
        switchyard_server::run(listener, state, std::future::pending())
            .await
            .unwrap();
    });
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

fn spawn(dir: &std::path::Path) -> (Server, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "agg_crash_server_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let server = Server(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(i) = line.find("AGG_CRASH_READY ") {
                let _ = tx.send(line[i + "AGG_CRASH_READY ".len()..].to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server is ready within 60 s");
    (server, url)
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn iso(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Batches of events with ids: exposures, conversions (some before their
/// exposure in the stream), all shuffled.
fn batches(seed: &mut u64, t0: i64) -> Vec<Vec<Value>> {
    let mut events = Vec::new();
    for u in 0..3000u64 {
        let unit = format!("u{u}");
        let arm = next(seed) % 2;
        let first = t0 + (next(seed) % 7_200_000) as i64;
        events.push(json!({"type": "exposure", "id": format!("x{u}"), "unit": unit,
            "experiment": "crash-exp", "variation": (["off", "on"][arm as usize]), "time": iso(first)}));
        if next(seed) % 100 < 12 + 4 * arm {
            events.push(json!({"type": "track", "id": format!("p{u}"), "unit": unit,
                "name": "purchase", "time": iso(first + (next(seed) % 3_600_000) as i64)}));
        }
        if next(seed).is_multiple_of(5) {
            events.push(json!({"type": "track", "id": format!("q{u}"), "unit": unit,
                "name": "purchase", "time": iso(first - 1 - (next(seed) % 3_600_000) as i64)}));
        }
    }
    for i in (1..events.len()).rev() {
        let j = (next(seed) % (i as u64 + 1)) as usize;
        events.swap(i, j);
    }
    events.chunks(50).map(|c| c.to_vec()).collect()
}

async fn settled(http: &reqwest::Client, url: &str, key: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..3000 {
        if let Ok(r) = http
            .get(format!("{url}{RESULTS}"))
            .bearer_auth(key)
            .send()
            .await
            && r.status() == 200
        {
            let v: Value = r.json().await.unwrap();
            let f = &v["freshness"];
            if f["stream_end"].as_u64() > Some(0) && f["offset"] == f["stream_end"] {
                return v;
            }
            last = v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the results did not catch up with the stream: {last}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "LOCK" && e.file_name() != "lock" {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_after_sigkills_during_ingestion_equal_an_uninterrupted_run() {
    let kills: usize = std::env::var("SWITCHYARD_AGG_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("aggregator crash test: {kills} kills, seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    std::fs::create_dir_all(&data).unwrap();
    // The store: an admin key, an SDK key, a running experiment.
    let (admin, sdk) = {
        let url = format!("sqlite://{}", data.join("config.db").display());
        let store = switchyard_store::open(&url).await.unwrap();
        let boot = switchyard_store::bootstrap(store.as_ref(), true)
            .await
            .unwrap()
            .unwrap();
        let sdk = store
            .create_api_key(
                "test",
                switchyard_store::ApiKeyInput {
                    name: "sdk".into(),
                    kind: switchyard_store::ApiKeyKind::Server,
                    project: Some("demo".into()),
                    environment: Some("development".into()),
                },
            )
            .await
            .unwrap();
        let input: switchyard_store::ExperimentInput = serde_json::from_value(json!({
            "key": "crash-exp", "flag": "new-search", "name": "Crash",
            "variations": [{"variation": "off", "weight": 5000}, {"variation": "on", "weight": 5000}],
            "metrics": ["purchase"]}))
        .unwrap();
        let e = store
            .create_experiment("test", "demo", "development", input)
            .await
            .unwrap();
        store
            .start_experiment("test", "demo", "development", "crash-exp", e.version)
            .await
            .unwrap();
        (boot.admin_key_secret, sdk.secret)
    };
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 60_000;
    let mut pending = batches(&mut seed, t0);
    pending.reverse();
    let total_batches = pending.len();
    let http = reqwest::Client::new();
    let mut killed = 0;
    let mut last;
    loop {
        let (server, url) = spawn(&data);
        last = Some((server, url.clone()));
        // Send in order until the kill; a batch not acknowledged is sent
        // again after the restart (same ids: stored once).
        let deadline = if killed < kills {
            Some(tokio::time::Instant::now() + Duration::from_millis(30 + next(&mut seed) % 300))
        } else {
            None
        };
        while let Some(b) = pending.last() {
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                break;
            }
            let r = http
                .post(format!("{url}/api/v1/events"))
                .bearer_auth(&sdk)
                .json(&Value::from(b.clone()))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 200 => {
                    pending.pop();
                }
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        if killed == kills {
            break;
        }
        // Let the aggregator work a moment, then SIGKILL at a random point.
        tokio::time::sleep(Duration::from_millis(next(&mut seed) % 60)).await;
        drop(last.take());
        killed += 1;
    }
    assert!(
        pending.is_empty(),
        "{} of {total_batches} batches unsent",
        pending.len()
    );
    let (server, url) = last.take().unwrap();
    let interrupted = settled(&http, &url, &admin).await;
    drop(server);
    assert_eq!(killed, kills);

    // The uninterrupted run: the same stored events, no checkpoint.
    let fresh = dir.path().join("b");
    copy_dir(&data, &fresh);
    std::fs::remove_dir_all(fresh.join("aggregator")).unwrap();
    let (server, url) = spawn(&fresh);
    let uninterrupted = settled(&http, &url, &admin).await;
    drop(server);

    let units: u64 = interrupted["variations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["units"].as_u64().unwrap())
        .sum();
    assert_eq!(units, 3000, "every exposed unit is counted once");
    assert_eq!(interrupted, uninterrupted);
}
