//! `sse`: opens N server-sent-event streams at once, waits for the first
//! event on each, and holds them. Optionally sends one trigger request (a
//! configuration change) and measures how long the next event takes to
//! reach every held client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Incoming;
use hyper::header::{HOST, HeaderName, HeaderValue};
use serde_json::json;
use tokio::sync::{Semaphore, watch};

use crate::stats::{Latency, rss_kib};
use crate::target::{Target, parse_header};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Server base URL, `http://127.0.0.1:PORT` (loopback only).
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "/sdk/v1/stream")]
    path: String,
    /// Extra header, `Name: value` (repeatable), e.g. the SDK key.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Concurrent clients (at most 100000; mind `ulimit -n`).
    #[arg(short = 'n', long, default_value_t = 10_000)]
    clients: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 256)]
    parallel: usize,
    /// Seconds allowed for every client to connect and get its first event.
    #[arg(long, default_value_t = 120.0)]
    connect_timeout: f64,
    /// Seconds to hold every stream once connected (after any trigger).
    #[arg(long, default_value_t = 2.0)]
    hold: f64,
    /// PID of the server, to report its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Trigger: path of one request sent once every client is held; the
    /// next event each client gets is timed from it.
    #[arg(long)]
    trigger_path: Option<String>,
    #[arg(long, default_value = "POST")]
    trigger_method: String,
    #[arg(long)]
    trigger_body: Option<String>,
    /// Trigger header, `Name: value` (repeatable).
    #[arg(long = "trigger-header")]
    trigger_headers: Vec<String>,
    /// Seconds to wait for the triggered event on every client.
    #[arg(long, default_value_t = 30.0)]
    change_timeout: f64,
}

/// Shared by every client task.
#[derive(Debug)]
struct Shared {
    target: Target,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    held: AtomicUsize,
    failed: AtomicUsize,
    /// When the trigger was sent; arrivals are timed from it.
    trigger_at: Mutex<Option<Instant>>,
    arrivals: Mutex<Vec<u64>>,
    /// Flips to true when the run is over and streams may close.
    release: watch::Sender<bool>,
}

pub async fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    let target = Target::parse(&args.url)?;
    if args.clients == 0 || args.clients > 100_000 {
        bail!("clients must be 1..=100000");
    }
    for t in [args.connect_timeout, args.hold, args.change_timeout] {
        if !(0.0..=600.0).contains(&t) {
            bail!("timeouts and hold are 0..=600 seconds");
        }
    }
    let mut headers = vec![(HOST, target.authority.clone())];
    for h in &args.headers {
        headers.push(parse_header(h)?);
    }
    let shared = Arc::new(Shared {
        target: target.clone(),
        path: args.path.clone(),
        headers,
        held: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        trigger_at: Mutex::new(None),
        arrivals: Mutex::new(Vec::with_capacity(args.clients)),
        release: watch::Sender::new(false),
    });
    let rss_before = args.server_pid.and_then(rss_kib);

    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.parallel.max(1)));
    let mut tasks = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let (shared, gate) = (shared.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            if client(&shared, &gate).await.is_err() {
                shared.failed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let deadline = started + Duration::from_secs_f64(args.connect_timeout);
    while shared.held.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < args.clients
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let held = shared.held.load(Ordering::Relaxed);
    let failed = shared.failed.load(Ordering::Relaxed);
    eprintln!(
        "sse: {held} of {} clients held after {connect_secs:.2} s ({failed} failed)",
        args.clients
    );
    // Let the server settle before reading its memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_held = args.server_pid.and_then(rss_kib);

    let mut change = serde_json::Value::Null;
    if let Some(path) = &args.trigger_path {
        let mut req = Request::builder()
            .method(args.trigger_method.as_str())
            .uri(path.as_str())
            .header(HOST, target.authority.clone());
        for h in &args.trigger_headers {
            let (n, v) = parse_header(h)?;
            req = req.header(n, v);
        }
        let body = args.trigger_body.clone().unwrap_or_default();
        if !body.is_empty() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        let mut sender = target.connect().await?;
        *lock(&shared.trigger_at) = Some(Instant::now());
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let text = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "trigger answered {status}: {}",
                String::from_utf8_lossy(&text)
            );
        }
        let wait_until = Instant::now() + Duration::from_secs_f64(args.change_timeout);
        while lock(&shared.arrivals).len() < held && Instant::now() < wait_until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut nanos = std::mem::take(&mut *lock(&shared.arrivals));
        let received = nanos.len();
        let latency = Latency::of(&mut nanos);
        eprintln!("sse: change reached {received} of {held} clients; {latency}");
        change = json!({"received": received, "latency": latency.to_json()});
    }

    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let rss_end = args.server_pid.and_then(rss_kib);
    let still_held = shared.held.load(Ordering::Relaxed);
    shared.release.send_replace(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    if let (Some(a), Some(b)) = (rss_before, rss_held) {
        eprintln!(
            "sse: server RSS {a} KiB before, {b} KiB holding {held} streams ({:.1} KiB per stream)",
            (b.saturating_sub(a)) as f64 / held.max(1) as f64
        );
    }
    Ok(json!({
        "label": "sse",
        "clients": args.clients,
        "held": held,
        "held_at_end": still_held,
        "failed": failed,
        "connect_s": connect_secs,
        "server_rss_kib_before": rss_before,
        "server_rss_kib_held": rss_held,
        "server_rss_kib_end": rss_end,
        "change": change,
    }))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One client: connect, wait for the first `config` event, hold the
/// stream, time the next event after the trigger, close on release.
async fn client(shared: &Shared, gate: &Semaphore) -> anyhow::Result<()> {
    let permit = gate.acquire().await?;
    let mut sender = shared.target.connect().await?;
    let mut req = Request::builder().uri(shared.path.as_str());
    for (n, v) in &shared.headers {
        req = req.header(n, v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::new()))?)
        .await?;
    if !resp.status().is_success() {
        bail!("stream answered {}", resp.status());
    }
    let mut events = Events::new(resp.into_body());
    events.next_config().await?;
    drop(permit);
    shared.held.fetch_add(1, Ordering::Relaxed);
    let mut release = shared.release.subscribe();
    let result = tokio::select! {
        _ = release.wait_for(|r| *r) => Ok(()),
        next = events.next_config() => next.map(|()| {
            let at = Instant::now();
            if let Some(t0) = *lock(&shared.trigger_at) {
                lock(&shared.arrivals).push(at.saturating_duration_since(t0).as_nanos() as u64);
            }
        }),
    };
    if result.is_err() {
        shared.held.fetch_sub(1, Ordering::Relaxed);
        return result;
    }
    let _ = release.wait_for(|r| *r).await;
    Ok(())
}

/// SSE frames from a response body.
struct Events {
    body: Incoming,
    buf: BytesMut,
}

impl Events {
    fn new(body: Incoming) -> Self {
        Events {
            body,
            buf: BytesMut::new(),
        }
    }

    /// Reads until a complete frame with `event: config`.
    async fn next_config(&mut self) -> anyhow::Result<()> {
        loop {
            while let Some(end) = find(&self.buf, b"\n\n") {
                let frame = self.buf.split_to(end + 2);
                if frame[..]
                    .split(|&b| b == b'\n')
                    .any(|l| l == b"event: config" || l == b"event:config")
                {
                    return Ok(());
                }
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => bail!("stream closed"),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
