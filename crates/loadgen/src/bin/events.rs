//! Event ingestion load: batches of events over keep-alive HTTP/1
//! connections to `POST /api/v1/events` (loopback only), reporting the
//! rate of durably accepted events, batch latency, and the rate at which
//! this process parses the same batches with serde_json (the baseline).
//!
//! `events --url http://127.0.0.1:PORT --key SECRET [--connections 8]
//! [--seconds 10] [--batch 500]`

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;

#[derive(Debug, Parser)]
struct Args {
    /// Server base URL; must be a loopback address.
    #[arg(long)]
    url: String,
    /// Server or client SDK key.
    #[arg(long)]
    key: String,
    #[arg(long, default_value_t = 8)]
    connections: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Seconds of the in-process serde_json parse baseline.
    #[arg(long, default_value_t = 2.0)]
    parse_seconds: f64,
    /// Event time of every event (ms since the epoch); `now` for the time
    /// the generator starts (so an experiment started before counts them).
    #[arg(long, default_value = "1767225600000")]
    time_ms: String,
}

const ID_DIGITS: usize = 12;

/// One batch body with the byte offsets of each event id's counter digits.
struct Template {
    body: Vec<u8>,
    slots: Vec<usize>,
}

fn template(n: usize, variant: usize, time_ms: i64) -> Template {
    let mut body = String::from("[");
    let mut slots = Vec::new();
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        let u = (variant * 7919 + i * 31) % 100_000;
        body.push_str("{\"id\":\"");
        slots.push(body.len());
        body.push_str(&"0".repeat(ID_DIGITS));
        body.push_str(&format!("-{i}\","));
        if i % 5 == 0 {
            body.push_str(&format!(
                r#""type":"exposure","unit":"user-{u}","experiment":"checkout","flag":"new-checkout","variation":"v{}","time":{time_ms}}}"#,
                u % 2
            ));
        } else {
            body.push_str(&format!(
                r#""type":"track","unit":"user-{u}","name":"purchase","value":{}.5,"time":{time_ms},"attributes":{{"plan":"pro","country":"DE"}}}}"#,
                i % 100
            ));
        }
    }
    body.push(']');
    Template {
        body: body.into_bytes(),
        slots,
    }
}

impl Template {
    /// The body with every id stamped with `counter` (unique per request).
    fn stamp(&self, counter: u64) -> Bytes {
        let mut body = self.body.clone();
        let digits = format!("{counter:0ID_DIGITS$}");
        for &s in &self.slots {
            body[s..s + ID_DIGITS].copy_from_slice(digits.as_bytes());
        }
        Bytes::from(body)
    }
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Plain<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    id: Option<&'a str>,
    unit: &'a str,
    time: Option<i64>,
    experiment: Option<&'a str>,
    flag: Option<&'a str>,
    variation: Option<&'a str>,
    name: Option<&'a str>,
    value: Option<f64>,
    #[serde(borrow)]
    attributes: Option<&'a serde_json::value::RawValue>,
}

/// Events per second serde_json parses the bodies into borrowed structs.
fn parse_rate(bodies: &[Bytes], seconds: f64) -> f64 {
    let start = Instant::now();
    let mut events = 0usize;
    while start.elapsed().as_secs_f64() < seconds {
        for b in bodies {
            let v: Vec<Plain<'_>> = serde_json::from_slice(b).unwrap_or_default();
            events += std::hint::black_box(v).len();
        }
    }
    events as f64 / start.elapsed().as_secs_f64()
}

struct ConnResult {
    accepted: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

async fn connection(
    addr: String,
    host: String,
    key: String,
    templates: std::sync::Arc<Vec<Template>>,
    conn: usize,
    stop: Instant,
) -> anyhow::Result<ConnResult> {
    let stream = tokio::net::TcpStream::connect(&addr).await?;
    stream.set_nodelay(true)?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, driver) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(driver);
    let mut out = ConnResult {
        accepted: 0,
        errors: 0,
        latencies_us: Vec::new(),
    };
    let mut seq = 0u64;
    while Instant::now() < stop {
        let counter = (conn as u64) << 32 | seq;
        let body = templates[seq as usize % templates.len()].stamp(counter);
        seq += 1;
        let req = Request::post("/api/v1/events")
            .header("host", &host)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let t = Instant::now();
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        out.latencies_us
            .push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        if status.as_u16() != 200 {
            out.errors += 1;
            if out.errors == 1 {
                eprintln!("status {status}: {}", String::from_utf8_lossy(&body));
            }
            if status.as_u16() == 429 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        out.accepted += v["accepted"].as_u64().unwrap_or(0);
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let hostport = args
        .url
        .strip_prefix("http://")
        .context("--url must be http://127.x.x.x:PORT")?
        .trim_end_matches('/')
        .to_string();
    if !(hostport.starts_with("127.")
        || hostport.starts_with("localhost:")
        || hostport.starts_with("[::1]"))
    {
        bail!("refusing a non-loopback target {hostport}");
    }
    let time_ms: i64 = match args.time_ms.as_str() {
        "now" => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_millis() as i64,
        t => t.parse().context("--time-ms: milliseconds or `now`")?,
    };
    let templates: Vec<Template> = (0..16).map(|v| template(args.batch, v, time_ms)).collect();
    let bodies: Vec<Bytes> = templates
        .iter()
        .enumerate()
        .map(|(i, t)| t.stamp(i as u64))
        .collect();
    let bytes_per_batch = bodies[0].len();
    let parse_before = parse_rate(&bodies, args.parse_seconds / 2.0);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let templates = std::sync::Arc::new(templates);
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(args.seconds);
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..args.connections {
            tasks.push(tokio::spawn(connection(
                hostport.clone(),
                hostport.clone(),
                args.key.clone(),
                templates.clone(),
                c,
                stop,
            )));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await);
        }
        out
    });
    let elapsed = start.elapsed().as_secs_f64();
    let parse_after = parse_rate(&bodies, args.parse_seconds / 2.0);
    let parse = (parse_before + parse_after) / 2.0;

    let mut accepted = 0u64;
    let mut errors = 0u64;
    let mut lat = Vec::new();
    for r in results {
        let r = r??;
        accepted += r.accepted;
        errors += r.errors;
        lat.extend(r.latencies_us);
    }
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let rate = accepted as f64 / elapsed;
    println!(
        "batches: {} ({} non-200), {} events each, {} bytes each",
        lat.len(),
        errors,
        args.batch,
        bytes_per_batch
    );
    println!(
        "accepted durably: {rate:.0} events/s over {elapsed:.1} s, {} connections",
        args.connections
    );
    println!(
        "batch latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.5) as f64 / 1000.0,
        pct(0.99) as f64 / 1000.0,
        lat.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    println!("raw serde_json parse (borrowed structs, one core): {parse:.0} events/s");
    println!("ratio accepted / raw parse: {:.2}", rate / parse);
    Ok(())
}
