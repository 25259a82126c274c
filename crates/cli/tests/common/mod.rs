//! What the binary's integration tests share: a real `switchyard serve`
//! (and `switchyard relay`) process on port 0, and waiting for a condition.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub admin: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn lines(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The address of a process's `listening` line (JSON logs on `err`).
pub fn listening_address(err: &mpsc::Receiver<String>) -> String {
    let mut log = Vec::new();
    loop {
        let line = err
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no \"listening\" line; log: {log:#?}"));
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        log.push(line);
        if v["fields"]["message"] == "listening" {
            return v["fields"]["address"].as_str().unwrap().to_string();
        }
    }
}

/// The admin key a first start prints on standard output, waiting up to
/// `wait` between lines.
pub fn printed_admin_key(out: &mpsc::Receiver<String>, wait: Duration) -> Option<String> {
    out.try_iter()
        .chain(std::iter::from_fn(|| out.recv_timeout(wait).ok()))
        .map(|l| l.trim().to_string())
        .find(|l| l.starts_with("sy_admin_"))
}

/// Starts `serve` on `listen` over `dir`. The first start of a directory
/// prints the admin key; a restart reuses `admin`.
pub fn start(dir: &Path, listen: &str, admin: Option<&str>) -> Server {
    // The demo project, with its simulated traffic (other units).
    start_with(dir, &["--demo", "--listen", listen], admin)
}

/// Starts `serve --log-format json --data-dir DIR` with `args`. Without
/// `admin`, waits for the admin key the first start prints.
pub fn start_with(dir: &Path, args: &[&str], admin: Option<&str>) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--log-format", "json"])
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn,switchyard=info")
        .env_remove("SWITCHYARD_DEMO")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(child.stdout.take().unwrap());
    let err = lines(child.stderr.take().unwrap());
    let addr = listening_address(&err);
    let admin = match admin {
        Some(a) => a.to_string(),
        None => printed_admin_key(&out, Duration::from_secs(2))
            .expect("the first start prints the admin key"),
    };
    std::thread::spawn(move || for _ in err {});
    std::thread::spawn(move || for _ in out {});
    Server { child, addr, admin }
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new server SDK key for `demo/<environment>`: (id, secret).
    pub async fn sdk_key(&self, environment: &str) -> (String, String) {
        self.key("server", environment).await
    }

    /// `METHOD /api/v1{path}` with the admin key: the status and the JSON
    /// answer (`null` when there is none).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = reqwest::Client::new()
            .request(method, format!("{}/api/v1{path}", self.url()))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    /// A new SDK key (`server` or `client`) for `demo/<environment>`:
    /// (id, secret).
    pub async fn key(&self, kind: &str, environment: &str) -> (String, String) {
        let (_, v) = self
            .api(
                reqwest::Method::POST,
                "/api-keys",
                Some(json!({"name": "sdk test", "kind": kind, "project": "demo", "environment": environment})),
            )
            .await;
        let field = |name: &str| {
            v[name]
                .as_str()
                .unwrap_or_else(|| panic!("no {name} in {v}"))
                .to_string()
        };
        (field("id"), field("secret"))
    }

    /// Turns a flag on or off in `demo/<environment>` (the kill switch).
    pub async fn set_enabled(&self, flag: &str, environment: &str, enabled: bool) {
        let http = reqwest::Client::new();
        let flag_url = format!("{}/api/v1/projects/demo/flags/{flag}", self.url());
        let etag = http
            .get(&flag_url)
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap()
            .headers()["etag"]
            .to_str()
            .unwrap()
            .to_string();
        let r = http
            .patch(format!("{flag_url}/environments/{environment}"))
            .bearer_auth(&self.admin)
            .header("if-match", etag)
            .json(&json!({"enabled": enabled}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }

    /// The events the server stored for `demo/<environment>`.
    pub async fn events(&self, environment: &str) -> Vec<Value> {
        let text = reqwest::Client::new()
            .get(format!(
                "{}/api/v1/events/export?project=demo&environment={environment}",
                self.url()
            ))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Polls `check` every 10 ms until it holds or `limit` passes; the time
/// it took.
pub async fn within(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

impl Server {
    /// Revokes key `id`.
    pub async fn revoke(&self, id: &str) {
        let r = reqwest::Client::new()
            .delete(format!("{}/api/v1/api-keys/{id}", self.url()))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }
}

/// A `switchyard relay` process.
pub struct Relay {
    pub child: Child,
    pub addr: String,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Relay {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts `relay` of `keys` from `upstream` on `listen` over `dir`, with
/// `extra` arguments.
pub fn start_relay(
    dir: &Path,
    listen: &str,
    upstream: &str,
    keys: &[&str],
    extra: &[&str],
) -> Relay {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "relay",
            "--upstream",
            upstream,
            "--listen",
            listen,
            "--log-format",
            "json",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(dir)
        .env("SWITCHYARD_RELAY_KEYS", keys.join(","))
        .env("RUST_LOG", "warn,switchyard=info,switchyard_relay=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = lines(child.stderr.take().unwrap());
    let addr = listening_address(&err);
    std::thread::spawn(move || {
        for line in err {
            if std::env::var_os("RELAY_LOG").is_some() {
                eprintln!("relay: {line}");
            }
        }
    });
    Relay { child, addr }
}
