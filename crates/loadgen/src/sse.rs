//! `sse`: opens N server-sent-event streams at once, waits for the first
//! event on each, and holds them. Optionally sends one trigger request (a
//! configuration change) and measures how long the next event takes to
//! reach every held client.
//!
//! A client is a bare TCP socket, not an HTTP client: it writes the
//! request, checks the status line and counts `event: config` in what it
//! reads, through one scratch buffer on the stack, so holding 100,000
//! streams costs the generator little more than its sockets. This reads
//! the server's framing as it is (one SSE event per chunk, no event name
//! inside a document); it is a benchmark client, not an SSE parser.
//! Connections are spread over several source addresses (127.0.0.1,
//! 127.0.0.2, ...): one address has about 28,000 ephemeral ports.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::HOST;
use memchr::memmem;
use serde_json::json;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::stats::{Latency, cpu_time, rss_kib};
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
    /// Concurrent clients (at most 200000; mind `ulimit -n`).
    #[arg(short = 'n', long, default_value_t = 10_000)]
    clients: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 256)]
    parallel: usize,
    /// Send a `GET` of this path first on each connection (pipelined
    /// with the stream request), so the stream is not the connection's
    /// first request: the server then serves it through hyper, not its
    /// lean stream path, which measures what that path saves.
    #[arg(long)]
    before_path: Option<String>,
    /// Source addresses to connect from, 127.0.0.1 to 127.0.0.N (an IPv4
    /// loopback target only). Default: one per 20,000 clients.
    #[arg(long)]
    sources: Option<u8>,
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
    /// Base URL the trigger goes to, when not `--url` (streams held on a
    /// relay, the change made on its upstream).
    #[arg(long)]
    trigger_url: Option<String>,
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

/// Largest client count: five source addresses' worth of ports, and far
/// more than one server is asked to hold.
const MAX_CLIENTS: usize = 200_000;

/// Shared by every client task.
#[derive(Debug)]
struct Shared {
    server: SocketAddr,
    /// Local addresses to connect from (empty: let the system choose).
    sources: Vec<IpAddr>,
    /// The whole request, written in one go.
    request: Vec<u8>,
    held: AtomicUsize,
    failed: AtomicUsize,
    /// Held streams the server closed before the end.
    dropped: AtomicUsize,
    /// When the trigger was sent; arrivals are timed from it.
    trigger_at: Mutex<Option<Instant>>,
    arrivals: Mutex<Vec<u64>>,
    /// Flips to true when the run is over and streams may close.
    release: watch::Sender<bool>,
}

pub async fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    let target = Target::parse(&args.url)?;
    if args.clients == 0 || args.clients > MAX_CLIENTS {
        bail!("clients must be 1..={MAX_CLIENTS}");
    }
    for t in [args.connect_timeout, args.hold, args.change_timeout] {
        if !(0.0..=600.0).contains(&t) {
            bail!("timeouts and hold are 0..=600 seconds");
        }
    }
    let sources = source_addresses(&target, args.sources, args.clients)?;
    let host = target.authority.to_str()?;
    let mut request = match &args.before_path {
        Some(path) => format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n"),
        None => String::new(),
    };
    request.push_str(&format!("GET {} HTTP/1.1\r\nhost: {host}\r\n", args.path));
    for h in &args.headers {
        let (n, v) = parse_header(h)?;
        request.push_str(&format!("{}: {}\r\n", n, v.to_str()?));
    }
    request.push_str("\r\n");
    let shared = Arc::new(Shared {
        server: target.addr,
        sources: sources.clone(),
        request: request.into_bytes(),
        held: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        dropped: AtomicUsize::new(0),
        trigger_at: Mutex::new(None),
        arrivals: Mutex::new(Vec::with_capacity(args.clients)),
        release: watch::Sender::new(false),
    });
    let rss_before = args.server_pid.and_then(rss_kib);
    let own_rss_before = rss_kib(std::process::id());

    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.parallel.max(1)));
    let mut tasks = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let (shared, gate) = (shared.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = client(&shared, &gate, i).await
                && shared.failed.fetch_add(1, Ordering::Relaxed) == 0
            {
                eprintln!("sse: first failure: {e:#}");
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
        "sse: {held} of {} clients held after {connect_secs:.2} s ({failed} failed, {} source addresses)",
        args.clients,
        sources.len().max(1)
    );
    // Let the server settle before reading its memory.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rss_held = args.server_pid.and_then(rss_kib);
    let own_rss_held = rss_kib(std::process::id());

    let mut change = serde_json::Value::Null;
    if let Some(path) = &args.trigger_path {
        let trigger_target = match &args.trigger_url {
            Some(url) => Target::parse(url)?,
            None => Target::parse(&args.url)?,
        };
        let mut req = Request::builder()
            .method(args.trigger_method.as_str())
            .uri(path.as_str())
            .header(HOST, trigger_target.authority.clone());
        for h in &args.trigger_headers {
            let (n, v) = parse_header(h)?;
            req = req.header(n, v);
        }
        let body = args.trigger_body.clone().unwrap_or_default();
        if !body.is_empty() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        let mut sender = trigger_target.connect().await?;
        let cpu_before = (
            args.server_pid.and_then(cpu_time),
            cpu_time(std::process::id()),
        );
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
        // CPU each side used while the change went out (10 ms ticks).
        let used = |before: Option<Duration>, now: Option<Duration>| {
            before
                .zip(now)
                .map(|(b, n)| n.saturating_sub(b).as_secs_f64())
        };
        let server_cpu = used(cpu_before.0, args.server_pid.and_then(cpu_time));
        let loadgen_cpu = used(cpu_before.1, cpu_time(std::process::id()));
        let received = nanos.len();
        let latency = Latency::of(&mut nanos);
        eprintln!(
            "sse: change reached {received} of {held} clients; {latency}; CPU meanwhile: server {:.2} s, generator {:.2} s",
            server_cpu.unwrap_or(f64::NAN),
            loadgen_cpu.unwrap_or(f64::NAN)
        );
        change = json!({"received": received, "latency": latency.to_json(),
                        "server_cpu_s": server_cpu, "loadgen_cpu_s": loadgen_cpu});
    }

    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let rss_end = args.server_pid.and_then(rss_kib);
    let still_held = shared.held.load(Ordering::Relaxed);
    let dropped = shared.dropped.load(Ordering::Relaxed);
    shared.release.send_replace(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let per_stream = |a: Option<u64>, b: Option<u64>| {
        a.zip(b)
            .map(|(a, b)| b.saturating_sub(a) as f64 / held.max(1) as f64)
    };
    if let (Some(a), Some(b)) = (rss_before, rss_held) {
        eprintln!(
            "sse: server RSS {a} KiB before, {b} KiB holding {held} streams ({:.1} KiB per stream)",
            (b.saturating_sub(a)) as f64 / held.max(1) as f64
        );
    }
    if let Some(k) = per_stream(own_rss_before, own_rss_held) {
        eprintln!("sse: this generator's RSS grew {k:.1} KiB per stream");
    }
    Ok(json!({
        "label": "sse",
        "clients": args.clients,
        "sources": sources.len().max(1),
        "held": held,
        "held_at_end": still_held,
        "dropped": dropped,
        "failed": failed,
        "connect_s": connect_secs,
        "server_rss_kib_before": rss_before,
        "server_rss_kib_held": rss_held,
        "server_rss_kib_end": rss_end,
        "server_kib_per_stream": per_stream(rss_before, rss_held),
        "loadgen_kib_per_stream": per_stream(own_rss_before, own_rss_held),
        "change": change,
    }))
}

/// The local addresses connections are spread over: 127.0.0.1 to
/// 127.0.0.N for an IPv4 loopback server, none (the system's choice)
/// otherwise.
fn source_addresses(
    target: &Target,
    asked: Option<u8>,
    clients: usize,
) -> anyhow::Result<Vec<IpAddr>> {
    let IpAddr::V4(_) = target.addr.ip() else {
        if asked.is_some_and(|n| n > 1) {
            bail!("--sources needs an IPv4 loopback server (127.x.y.z)");
        }
        return Ok(Vec::new());
    };
    let n = match asked {
        Some(0) => bail!("--sources must be at least 1"),
        Some(n) => n,
        None => u8::try_from(clients.div_ceil(20_000)).context("too many clients")?,
    };
    Ok((1..=n)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
        .collect())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const EVENT: &[u8] = b"event: config\n";

/// One client: connect, wait for the first `config` event, hold the
/// stream, time the next event after the trigger, close on release.
async fn client(shared: &Shared, gate: &Semaphore, index: usize) -> anyhow::Result<()> {
    let permit = gate.acquire().await?;
    let stream = connect(shared, index).await?;
    stream.writable().await?;
    write_all(&stream, &shared.request).await?;
    let mut events = EventCounter::default();
    while events.seen == 0 {
        events.read(&stream).await?;
    }
    drop(permit);
    shared.held.fetch_add(1, Ordering::Relaxed);
    let mut release = shared.release.subscribe();
    let mut timed = false;
    loop {
        tokio::select! {
            _ = release.wait_for(|r| *r) => return Ok(()),
            read = events.read(&stream) => {
                if let Err(e) = read {
                    shared.held.fetch_sub(1, Ordering::Relaxed);
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
                if events.seen > 1 && !timed {
                    timed = true;
                    let at = Instant::now();
                    if let Some(t0) = *lock(&shared.trigger_at) {
                        lock(&shared.arrivals)
                            .push(at.saturating_duration_since(t0).as_nanos() as u64);
                    }
                }
            }
        }
    }
}

async fn connect(shared: &Shared, index: usize) -> anyhow::Result<TcpStream> {
    let Some(source) = shared.sources.get(index % shared.sources.len().max(1)) else {
        return Ok(TcpStream::connect(shared.server).await?);
    };
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(*source, 0))?;
    Ok(socket.connect(shared.server).await?)
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> anyhow::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Counts `event: config` lines in a response read piece by piece, with
/// the status line checked first. Keeps only the last few bytes of a read
/// (an event name split across two reads is still found).
#[derive(Debug, Default)]
struct EventCounter {
    status_checked: bool,
    seen: u32,
    carry: [u8; EVENT.len()],
    carry_len: usize,
}

impl EventCounter {
    /// Waits for the next bytes and counts the events in them; an error
    /// when the stream ends or the status is not 200.
    async fn read(&mut self, stream: &TcpStream) -> anyhow::Result<()> {
        loop {
            stream.readable().await?;
            // Not held across an await: one buffer on the stack per read.
            let mut buf = [0u8; 16 * 1024];
            let c = self.carry_len;
            buf[..c].copy_from_slice(&self.carry[..c]);
            let n = match stream.try_read(&mut buf[c..]) {
                Ok(0) => bail!("the server closed the stream"),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            };
            self.take(&buf[..c + n])?;
            return Ok(());
        }
    }

    fn take(&mut self, data: &[u8]) -> anyhow::Result<()> {
        if !self.status_checked {
            if data.len() < 12 {
                bail!("the status line did not come in one read");
            }
            if &data[..12] != b"HTTP/1.1 200" {
                let line = data.split(|&b| b == b'\r').next().unwrap_or_default();
                bail!("stream answered {}", String::from_utf8_lossy(line));
            }
            self.status_checked = true;
        }
        self.seen += memmem::find_iter(data, EVENT).count() as u32;
        // Keep fewer bytes than an event name, so none is counted twice.
        let keep = data.len().min(EVENT.len() - 1);
        self.carry[..keep].copy_from_slice(&data[data.len() - keep..]);
        self.carry_len = keep;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_across_reads_and_only_once() {
        let mut c = EventCounter::default();
        c.take(b"HTTP/1.1 200 OK\r\n\r\n1f\r\nevent: con").unwrap();
        assert_eq!(c.seen, 0);
        let mut data = c.carry[..c.carry_len].to_vec();
        data.extend_from_slice(b"fig\nid: 1\n\n:keep-alive\n\nevent: config\n");
        c.take(&data).unwrap();
        assert_eq!(c.seen, 2);
        let mut data = c.carry[..c.carry_len].to_vec();
        data.extend_from_slice(b"data: {}\n\n");
        c.take(&data).unwrap();
        assert_eq!(c.seen, 2);
    }

    #[test]
    fn a_refused_stream_is_an_error() {
        let mut c = EventCounter::default();
        assert!(c.take(b"HTTP/1.1 401 Unauthorized\r\n").is_err());
    }

    #[test]
    fn sources_spread_over_loopback_addresses() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(source_addresses(&t, None, 10_000).unwrap().len(), 1);
        let five = source_addresses(&t, None, 100_000).unwrap();
        assert_eq!(five.len(), 5);
        assert_eq!(five[4], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5)));
        let v6 = Target::parse("http://[::1]:8080").unwrap();
        assert!(source_addresses(&v6, None, 100_000).unwrap().is_empty());
    }
}
