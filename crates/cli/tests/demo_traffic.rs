//! `switchyard serve --demo` shows results of the demo experiment within
//! seconds, labelled simulated; the same data directory served without
//! `--demo` receives no simulated events.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{lines, listening_address, printed_admin_key};
use serde_json::Value;

struct Server {
    child: Child,
    addr: String,
    key: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, demo: bool) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "info")
        .env_remove("SWITCHYARD_DEMO")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if demo {
        cmd.arg("--demo");
    }
    let mut child = cmd.spawn().unwrap();
    let out = lines(child.stdout.take().unwrap());
    let err = lines(child.stderr.take().unwrap());
    let addr = listening_address(&err);
    // The first start prints the admin key on stdout.
    let key = printed_admin_key(&out, Duration::from_millis(200));
    std::thread::spawn(move || for _ in err {});
    std::thread::spawn(move || for _ in out {});
    Server { child, addr, key }
}

/// A GET over a fresh connection: status and JSON body.
fn get(addr: &str, path: &str, key: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

const RESULTS: &str =
    "/api/v1/projects/demo/environments/development/experiments/checkout-test/results?points=0";

fn units(r: &Value) -> u64 {
    r["variations"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x["units"].as_u64()).sum())
        .unwrap_or(0)
}

#[test]
fn serve_demo_shows_simulated_results_within_seconds_and_only_with_demo() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), true);
    let key = server
        .key
        .clone()
        .expect("the first start prints the admin key");
    let started = Instant::now();
    let r = loop {
        let (status, r) = get(&server.addr, RESULTS, &key);
        if status == 200 && units(&r) >= 40 && r["metrics"][0]["statistics"].is_array() {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no simulated results after 30 s: {status} {r}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(r["simulated"], true, "{r}");
    assert!(
        r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "simulated_traffic"),
        "{r}"
    );
    // Both variations receive units, and the analysis compares them.
    for v in r["variations"].as_array().unwrap() {
        assert!(v["units"].as_u64().unwrap() > 0, "{r}");
    }
    assert!(r["analysis"]["metrics"][0]["variations"][1]["comparison"].is_object());
    // Production receives nothing simulated.
    let (_, prod) = get(
        &server.addr,
        &RESULTS.replace("development", "production"),
        &key,
    );
    assert_eq!(units(&prod), 0, "{prod}");
    assert_eq!(prod["simulated"], false);
    drop(server);

    // The same data, served without --demo: the stream stops growing.
    let server = start(dir.path(), false);
    assert!(server.key.is_none());
    let caught_up = |r: &Value| r["freshness"]["offset"] == r["freshness"]["stream_end"];
    let started = Instant::now();
    let first = loop {
        let (status, r) = get(&server.addr, RESULTS, &key);
        if status == 200 && caught_up(&r) {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{status} {r}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(first["simulated"], false, "{first}");
    assert!(
        !first["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "simulated_traffic")
    );
    std::thread::sleep(Duration::from_secs(2));
    let (_, later) = get(&server.addr, RESULTS, &key);
    assert_eq!(
        later["freshness"]["stream_end"], first["freshness"]["stream_end"],
        "events arrived without --demo"
    );
    assert_eq!(units(&later), units(&first));
}

#[test]
fn the_replay_command_recomputes_an_experiment_and_prints_its_progress() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), true);
    let key = server.key.clone().unwrap();
    let started = Instant::now();
    while units(&get(&server.addr, RESULTS, &key).1) < 40 {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(100));
    }
    let run = |key: &str, experiment: &str| {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["replay", "--url", &format!("http://{}", server.addr)])
            .args(["--key", key, "--project", "demo", "--env", "development"])
            .args(["--experiment", experiment])
            .output()
            .unwrap()
    };
    let out = run(&key, "checkout-test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("replay checkout-test: done"), "{stderr}");
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["state"], "done");
    assert!(p["events_read"].as_u64().unwrap() >= 40, "{p}");
    assert_eq!(p["fraction"], 1.0);
    // Bad input: a clear error, exit status 2.
    let out = run(&key, "nope");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("sy_admin_wrong", "checkout-test");
    assert_eq!(out.status.code(), Some(2));
}

/// The banner (admin key, setup link) goes to stdout; a stdout nobody
/// reads any more (a supervisor gone, a closed pipe) must not stop the
/// server, as a panicking `println!` did.
#[test]
fn serve_keeps_serving_when_its_stdout_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .env_remove("SWITCHYARD_DEMO")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the read end is closed before anything is printed
    let err = lines(child.stderr.take().unwrap());
    let addr = loop {
        let line = err
            .recv_timeout(Duration::from_secs(60))
            .expect("the server exited before listening");
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if v["fields"]["message"] == "listening" {
            break v["fields"]["address"].as_str().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in err {});
    let server = Server {
        child,
        addr,
        key: None,
    };
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = get(&server.addr, "/healthz", "none");
    assert_eq!(status, 200);
}
