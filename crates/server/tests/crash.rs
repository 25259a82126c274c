//! Crash test: batches are sent while the server is killed with SIGKILL at
//! random moments and restarted; afterwards every acknowledged event must
//! be in the log exactly once (and no event twice: unacknowledged batches
//! are re-sent after each restart, with the same ids).
//!
//! The server process is this test binary itself, started again with
//! `SWITCHYARD_CRASH_DIR` set, running only [`crash_server_process`].
//! `SWITCHYARD_CRASH_KILLS` sets the number of kills (default 20).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DIR_VAR: &str = "SWITCHYARD_CRASH_DIR";

/// The server side: runs only when spawned by the crash test.
#[test]
fn crash_server_process() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let dir = std::path::PathBuf::from(dir);
        let url = format!("sqlite://{}", dir.join("config.db").display());
        let store = switchyard_store::open(&url).await.unwrap();
        switchyard_store::bootstrap(store.as_ref(), true)
            .await
            .unwrap();
        let key = store
            .create_api_key(
                "crash",
                switchyard_store::ApiKeyInput {
                    name: "crash".into(),
                    kind: switchyard_store::ApiKeyKind::Server,
                    project: Some("demo".into()),
                    environment: Some("production".into()),
                },
            )
            .await
            .unwrap();
        let events = switchyard_events::Events::open(&dir.join("events"), Default::default())
            .await
            .unwrap();
        let state = switchyard_server::AppState::new(store, Default::default())
            .await
            .unwrap()
            .with_events(Arc::new(events));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!(
            "CRASH_SERVER_READY http://{} {}",
            listener.local_addr().unwrap(),
            key.secret
        );
        switchyard_server::run(listener, state, std::future::pending())
            .await
            .unwrap();
    });
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &std::path::Path) -> (Server, String, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_server_process",
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
    // A reader thread hands over the ready line and keeps draining stdout.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(i) = line.find("CRASH_SERVER_READY ") {
                let _ = tx.send(line[i + "CRASH_SERVER_READY ".len()..].to_string());
            }
        }
    });
    let ready = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the crash server is ready within 60 s");
    let (url, key) = ready.split_once(' ').unwrap();
    (server, url.to_string(), key.to_string())
}

/// xorshift: reproducible from the printed seed.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn batch(ids: &[u64]) -> String {
    let evs: Vec<_> = ids
        .iter()
        .map(|i| serde_json::json!({"type": "track", "id": format!("c-{i}"), "unit": format!("u{}", i % 97), "name": "n", "value": i}))
        .collect();
    serde_json::Value::from(evs).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_sigkill_exactly_once() {
    let kills: usize = std::env::var("SWITCHYARD_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test: {kills} kills, seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let unacked: Arc<Mutex<Vec<Vec<u64>>>> = Arc::default();
    let mut next_id = 0u64;
    let started = Instant::now();
    for round in 0..=kills {
        let (server, url, key) = spawn(dir.path());
        let http = reqwest::Client::new();
        // Re-send what was never acknowledged, then new batches, from 4
        // concurrent senders, until the kill (none in the last round).
        let mut work: Vec<Vec<u64>> = std::mem::take(&mut *unacked.lock().unwrap());
        for _ in 0..400 {
            let size = 1 + next(&mut seed) % 200;
            work.push((next_id..next_id + size).collect());
            next_id += size;
        }
        let work = Arc::new(Mutex::new(work));
        let mut senders = Vec::new();
        for _ in 0..4 {
            let (work, acked, unacked, http, url, key) = (
                work.clone(),
                acked.clone(),
                unacked.clone(),
                http.clone(),
                url.clone(),
                key.clone(),
            );
            senders.push(tokio::spawn(async move {
                loop {
                    let Some(ids) = work.lock().unwrap().pop() else {
                        return;
                    };
                    let resp = http
                        .post(format!("{url}/api/v1/events"))
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .body(batch(&ids))
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status().as_u16() == 200 => {
                            let report: serde_json::Value = r.json().await.unwrap_or_default();
                            if report["accepted"].is_u64() {
                                acked.lock().unwrap().extend(ids);
                                continue;
                            }
                            unacked.lock().unwrap().push(ids);
                        }
                        _ => unacked.lock().unwrap().push(ids),
                    }
                }
            }));
        }
        if round < kills {
            let wait = 20 + next(&mut seed) % 250;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            drop(server); // SIGKILL
            for s in senders {
                let _ = s.await;
            }
            // Whatever the senders left unsent is unacknowledged too.
            unacked
                .lock()
                .unwrap()
                .extend(work.lock().unwrap().drain(..));
        } else {
            for s in senders {
                s.await.unwrap();
            }
            drop(server);
        }
    }
    assert!(
        unacked.lock().unwrap().is_empty(),
        "the last round acknowledges everything"
    );
    let mut counts: HashMap<u64, u32> = HashMap::new();
    switchyard_events::read_dir(&dir.path().join("events").join("log"), |_, p| {
        let ev = switchyard_events::decode_event(p).expect("a record decodes");
        let id: u64 = ev.id.unwrap().strip_prefix("c-").unwrap().parse().unwrap();
        *counts.entry(id).or_default() += 1;
    })
    .unwrap();
    let acked = acked.lock().unwrap();
    let missing = acked.iter().filter(|id| !counts.contains_key(id)).count();
    let twice = counts.values().filter(|c| **c > 1).count();
    eprintln!(
        "crash test: {} acknowledged, {} in the log, {:?}",
        acked.len(),
        counts.len(),
        started.elapsed()
    );
    assert_eq!(missing, 0, "acknowledged events lost");
    assert_eq!(twice, 0, "events stored twice");
    assert_eq!(
        counts.len() as u64,
        next_id,
        "every event was finally acknowledged and stored"
    );
}
