//! `http`: N keep-alive connections, each sending its next request as soon
//! as the previous response is read (closed loop), for a fixed time.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper::{Method, Request};
use serde_json::json;

use crate::stats::{Latency, cpu_time};
use crate::target::{Target, parse_header};

const MAX_SECONDS: f64 = 600.0;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Server base URL, `http://127.0.0.1:PORT` (loopback only).
    #[arg(long)]
    url: String,
    /// Request path.
    #[arg(long, default_value = "/healthz")]
    path: String,
    #[arg(long, default_value = "GET")]
    method: String,
    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Request body, read from a file.
    #[arg(long)]
    body_file: Option<std::path::PathBuf>,
    /// Extra header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Concurrent keep-alive connections.
    #[arg(short, long, default_value_t = 10)]
    connections: usize,
    /// Seconds measured (at most 600).
    #[arg(short, long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// The status every response must have (default: any 2xx or 304).
    #[arg(long)]
    expect_status: Option<u16>,
    /// PID of the server, to report the CPU it used while measured.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Name of this run in the JSON report.
    #[arg(long, default_value = "http")]
    label: String,
}

/// What every connection sends.
#[derive(Debug)]
struct Template {
    method: Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Template {
    fn request(&self) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str());
        for (n, v) in &self.headers {
            b = b.header(n, v);
        }
        Ok(b.body(Full::new(self.body.clone()))?)
    }
}

/// One connection's tally.
#[derive(Debug, Default)]
struct Tally {
    nanos: Vec<u64>,
    errors: u64,
    bad_status: u64,
    bytes: u64,
}

pub async fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    let target = Target::parse(&args.url)?;
    if !(args.duration > 0.0 && args.duration + args.warmup <= MAX_SECONDS) || args.warmup < 0.0 {
        bail!("duration + warmup must be positive and at most {MAX_SECONDS} s");
    }
    if args.connections == 0 || args.connections > 10_000 {
        bail!("connections must be 1..=10000");
    }
    let body = match (&args.body, &args.body_file) {
        (Some(b), _) => Bytes::from(b.clone()),
        (None, Some(path)) => {
            Bytes::from(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        (None, None) => Bytes::new(),
    };
    let mut headers = vec![(HOST, target.authority.clone())];
    for h in &args.headers {
        headers.push(parse_header(h)?);
    }
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(n, _)| n == hyper::header::CONTENT_TYPE)
    {
        headers.push((
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ));
    }
    let template = Rc::new(Template {
        method: Method::from_bytes(args.method.as_bytes())?,
        path: args.path.clone(),
        headers,
        body,
    });
    template.request()?; // fail early on a bad path or header

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let tallies: Vec<Rc<RefCell<Tally>>> = (0..args.connections)
        .map(|_| Rc::new(RefCell::new(Tally::default())))
        .collect();
    let local = tokio::task::LocalSet::new();
    for tally in &tallies {
        let (target, template, tally) = (target.clone(), template.clone(), tally.clone());
        let expect = args.expect_status;
        local.spawn_local(async move {
            connection(target, template, tally, measure_from, end, expect).await;
        });
    }
    let me = std::process::id();
    let (cpu_before, own_before) = local
        .run_until(async {
            tokio::time::sleep_until(measure_from.into()).await;
            (args.server_pid.and_then(cpu_time), cpu_time(me))
        })
        .await;
    let (cpu_after, own_after) = local
        .run_until(async {
            tokio::time::sleep_until(end.into()).await;
            (args.server_pid.and_then(cpu_time), cpu_time(me))
        })
        .await;
    // Let in-flight requests finish (bounded).
    let _ = tokio::time::timeout(Duration::from_secs(5), local).await;

    let mut all = Tally::default();
    for t in &tallies {
        let mut t = t.borrow_mut();
        all.nanos.append(&mut t.nanos);
        all.errors += t.errors;
        all.bad_status += t.bad_status;
        all.bytes += t.bytes;
    }
    let count = all.nanos.len();
    let rate = count as f64 / args.duration;
    let latency = Latency::of(&mut all.nanos);
    let server_cpu = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64() / args.duration),
        _ => None,
    };
    let own_cpu = match (own_before, own_after) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64() / args.duration),
        _ => None,
    };
    eprintln!(
        "{}: {} {} x{} for {:.1} s: {:.0} req/s; {}; {} errors, {} unexpected statuses{}{}",
        args.label,
        args.method,
        args.path,
        args.connections,
        args.duration,
        rate,
        latency,
        all.errors,
        all.bad_status,
        server_cpu
            .map(|c| format!("; server CPU {:.0} %", c * 100.0))
            .unwrap_or_default(),
        own_cpu
            .map(|c| format!(", load generator CPU {:.0} %", c * 100.0))
            .unwrap_or_default()
    );
    Ok(json!({
        "label": args.label,
        "method": args.method,
        "path": args.path,
        "connections": args.connections,
        "duration_s": args.duration,
        "requests": count,
        "rps": rate,
        "latency": latency.to_json(),
        "errors": all.errors,
        "unexpected_status": all.bad_status,
        "response_bytes": all.bytes,
        "server_cpu": server_cpu,
        "loadgen_cpu": own_cpu,
    }))
}

/// Closed loop on one connection; reconnects after an error.
async fn connection(
    target: Target,
    template: Rc<Template>,
    tally: Rc<RefCell<Tally>>,
    measure_from: Instant,
    end: Instant,
    expect: Option<u16>,
) {
    let mut sender = None;
    while Instant::now() < end {
        let s = match &mut sender {
            Some(s) => s,
            None => match target.connect().await {
                Ok(s) => sender.insert(s),
                Err(_) => {
                    tally.borrow_mut().errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(req) = template.request() else { return };
        let t0 = Instant::now();
        let result = async {
            s.ready().await?;
            let resp = s.send_request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body.len()))
        }
        .await;
        let done = Instant::now();
        let measured = t0 >= measure_from && done <= end;
        let mut t = tally.borrow_mut();
        match result {
            Ok((status, len)) => {
                let ok = match expect {
                    Some(e) => status == e,
                    None => (200..300).contains(&status) || status == 304,
                };
                if measured {
                    if ok {
                        t.nanos.push((done - t0).as_nanos() as u64);
                        t.bytes += len as u64;
                    } else {
                        t.bad_status += 1;
                    }
                }
            }
            Err(_) => {
                t.errors += 1;
                sender = None;
            }
        }
    }
}
