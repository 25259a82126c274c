//! `latency`: how long an acknowledged event takes to show in the results
//! API, against a running `switchyard serve` (loopback only).
//!
//! Setup, through the control API with an organisation-wide admin key: a
//! fresh project with one environment, a boolean flag, a running
//! experiment on it (metric `purchase`) and a server SDK key for events.
//!
//! Then two loops run side by side for `--seconds`:
//! - the sender posts a batch every `1/--rate` s to `/api/v1/events`:
//!   tracked `purchase` events of units already exposed, then exposures of
//!   `--exposures` new units (last, so once they count, the whole batch
//!   has been applied: the aggregator applies the stream in order). The
//!   moment the `200` arrives is the batch's acknowledgement; the batch is
//!   in the results when the experiment's unit count reaches the units
//!   exposed up to and including it.
//! - the poller asks for the results (`?points=0`) again as soon as each
//!   answer arrives and marks every batch whose units it counts as seen
//!   at the moment that answer arrived (an upper bound: the state it shows
//!   is at most one poll old).
//!
//! Latency per batch: seen minus acknowledged. Batches not seen within
//! `--grace` seconds after the last one are reported as missing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use serde_json::{Value, json};

use crate::stats::Latency;
use crate::target::Target;

const MAX_SECONDS: f64 = 600.0;
const MAX_BATCH: usize = 5_000;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Server base URL, `http://127.0.0.1:PORT` (loopback only).
    #[arg(long)]
    url: String,
    /// An organisation-wide admin key (owner or admin role): it creates
    /// the project, flag, experiment and SDK key of the run.
    #[arg(long, env = "SWITCHYARD_ADMIN_KEY")]
    key: String,
    /// Seconds of sending (at most 600).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Batches per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Tracked events per batch.
    #[arg(long, default_value_t = 200)]
    tracks: usize,
    /// New units exposed per batch (at least 1).
    #[arg(long, default_value_t = 50)]
    exposures: usize,
    /// Seconds to wait for the last batches to show.
    #[arg(long, default_value_t = 5.0)]
    grace: f64,
    /// Project key to create (default: `latency-<unix seconds>`).
    #[arg(long)]
    project: Option<String>,
}

/// One keep-alive connection speaking JSON.
struct Client {
    target: Target,
    conn: SendRequest<Full<Bytes>>,
}

impl Client {
    async fn new(target: &Target) -> anyhow::Result<Client> {
        Ok(Client {
            conn: target.connect().await?,
            target: target.clone(),
        })
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        key: &str,
        if_match: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.target.authority.clone())
            .header(AUTHORIZATION, format!("Bearer {key}"));
        if body.is_some() {
            b = b.header(CONTENT_TYPE, "application/json");
        }
        if let Some(v) = if_match {
            b = b.header("if-match", v);
        }
        let req = b.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        self.conn.ready().await?;
        let resp = self.conn.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok((status, value))
    }

    async fn expect(
        &mut self,
        method: Method,
        path: &str,
        key: &str,
        if_match: Option<&str>,
        body: Value,
        status: u16,
    ) -> anyhow::Result<Value> {
        let (got, v) = self
            .call(
                method,
                path,
                key,
                if_match,
                Some(serde_json::to_vec(&body)?),
            )
            .await?;
        if got != status {
            bail!("{path}: expected {status}, got {got}: {v}");
        }
        Ok(v)
    }
}

struct Setup {
    project: String,
    sdk_key: String,
    results_path: String,
}

async fn setup(c: &mut Client, admin: &str, project: String) -> anyhow::Result<Setup> {
    let post = Method::POST;
    c.expect(
        post.clone(),
        "/api/v1/projects",
        admin,
        None,
        json!({"key": project, "name": "Latency benchmark"}),
        201,
    )
    .await
    .context("creating the project (the key must be organisation-wide)")?;
    let p = format!("/api/v1/projects/{project}");
    c.expect(
        post.clone(),
        &format!("{p}/environments"),
        admin,
        None,
        json!({"key": "bench", "name": "Bench"}),
        201,
    )
    .await?;
    c.expect(
        post.clone(),
        &format!("{p}/flags"),
        admin,
        None,
        json!({"key": "lat-flag", "name": "Latency flag", "type": "boolean",
               "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]}),
        201,
    )
    .await?;
    c.expect(
        post.clone(),
        &format!("{p}/metrics"),
        admin,
        None,
        json!({"key": "purchase", "kind": "binomial", "numerator": {"event": "purchase"}}),
        201,
    )
    .await?;
    let exp = format!("{p}/environments/bench/experiments");
    let created = c
        .expect(
            post.clone(),
            &exp,
            admin,
            None,
            json!({"key": "lat", "flag": "lat-flag", "name": "Latency",
                   "variations": [{"variation": "off", "weight": 5000},
                                  {"variation": "on", "weight": 5000}],
                   "metrics": ["purchase"]}),
            201,
        )
        .await?;
    let version = created["version"].as_u64().unwrap_or(1);
    c.expect(
        post.clone(),
        &format!("{exp}/lat/start"),
        admin,
        Some(&format!("\"{version}\"")),
        json!({}),
        200,
    )
    .await?;
    let key = c
        .expect(
            post,
            "/api/v1/api-keys",
            admin,
            None,
            json!({"name": "latency-bench", "kind": "server", "project": project,
                   "environment": "bench"}),
            201,
        )
        .await?;
    let sdk_key = key["secret"]
        .as_str()
        .context("the created key has no secret")?
        .to_string();
    Ok(Setup {
        results_path: format!("{exp}/lat/results?points=0"),
        project,
        sdk_key,
    })
}

/// Per batch: the units exposed up to and including it, its
/// acknowledgement, and when the results first counted it.
#[derive(Debug, Clone, Copy)]
struct Batch {
    units: u64,
    acked: Instant,
    seen: Option<Instant>,
}

#[derive(Default)]
struct Shared {
    batches: Vec<Batch>,
    /// Index of the first batch not seen yet.
    first_unseen: usize,
    sending: bool,
}

fn body(batch: u64, tracks: usize, exposures: usize, units_before: u64) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut events = Vec::with_capacity(tracks + exposures);
    for i in 0..tracks {
        if units_before == 0 {
            break;
        }
        let u = (batch * 7919 + i as u64 * 104_729) % units_before;
        events.push(json!({"id": format!("t-{batch}-{i}"), "type": "track",
            "unit": format!("u-{u}"), "name": "purchase", "value": 1.0, "time": now}));
    }
    for i in 0..exposures as u64 {
        let u = units_before + i;
        let variation = if u.is_multiple_of(2) { "off" } else { "on" };
        events.push(json!({"id": format!("x-{batch}-{i}"), "type": "exposure",
            "unit": format!("u-{u}"), "experiment": "lat", "flag": "lat-flag",
            "variation": variation, "time": now}));
    }
    serde_json::to_vec(&events).unwrap_or_default()
}

async fn send(
    mut c: Client,
    args: &Args,
    sdk_key: &str,
    shared: Arc<Mutex<Shared>>,
) -> anyhow::Result<(Vec<u64>, u64)> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut units = 0u64;
    let mut batch = 0u64;
    let mut ack_nanos = Vec::new();
    let mut events = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        let b = body(batch, args.tracks, args.exposures, units);
        let sent = Instant::now();
        let (status, report) = c
            .call(Method::POST, "/api/v1/events", sdk_key, None, Some(b))
            .await?;
        let acked = Instant::now();
        if status != 200 {
            bail!("POST /api/v1/events answered {status}: {report}");
        }
        if report["rejected"].as_array().is_some_and(|r| !r.is_empty()) {
            bail!("events were rejected: {report}");
        }
        events += report["accepted"].as_u64().unwrap_or(0);
        ack_nanos.push((acked - sent).as_nanos() as u64);
        units += args.exposures as u64;
        batch += 1;
        if let Ok(mut s) = shared.lock() {
            s.batches.push(Batch {
                units,
                acked,
                seen: None,
            });
        }
    }
    if let Ok(mut s) = shared.lock() {
        s.sending = false;
    }
    Ok((ack_nanos, events))
}

/// Returns the number of polls and their durations.
async fn poll(
    mut c: Client,
    admin: &str,
    path: &str,
    grace: Duration,
    shared: Arc<Mutex<Shared>>,
) -> anyhow::Result<Vec<u64>> {
    let mut polls = Vec::new();
    let mut done_at: Option<Instant> = None;
    loop {
        let asked = Instant::now();
        let (status, v) = c.call(Method::GET, path, admin, None, None).await?;
        let now = Instant::now();
        polls.push((now - asked).as_nanos() as u64);
        // 503 until the consumer has heard of the experiment.
        if status == 200 {
            let units: u64 = v["variations"]
                .as_array()
                .map(|vs| vs.iter().filter_map(|x| x["units"].as_u64()).sum())
                .unwrap_or(0);
            let mut s = shared.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            while s.first_unseen < s.batches.len() && s.batches[s.first_unseen].units <= units {
                let i = s.first_unseen;
                s.batches[i].seen = Some(now);
                s.first_unseen += 1;
            }
            let all_seen = s.first_unseen == s.batches.len();
            if !s.sending {
                if all_seen {
                    break;
                }
                let d = *done_at.get_or_insert(now);
                if now - d > grace {
                    break;
                }
            }
        } else if status != 503 {
            bail!("GET {path} answered {status}: {v}");
        }
    }
    Ok(polls)
}

pub async fn run(args: Args) -> anyhow::Result<Value> {
    if !(args.seconds > 0.0 && args.seconds <= MAX_SECONDS) {
        bail!("--seconds must be in (0, {MAX_SECONDS}]");
    }
    if !(args.rate > 0.0 && args.rate <= 10_000.0) {
        bail!("--rate must be in (0, 10000] batches per second");
    }
    if args.exposures == 0 || args.tracks + args.exposures > MAX_BATCH {
        bail!("--exposures must be at least 1 and a batch at most {MAX_BATCH} events");
    }
    let target = Target::parse(&args.url)?;
    let project = args.project.clone().unwrap_or_else(|| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("latency-{t}")
    });
    let mut c = Client::new(&target).await?;
    let s = setup(&mut c, &args.key, project).await?;
    eprintln!(
        "latency: project {} with a running experiment; sending {} batches/s of {} tracked events + {} exposures for {} s",
        s.project, args.rate, args.tracks, args.exposures, args.seconds
    );
    let shared = Arc::new(Mutex::new(Shared {
        sending: true,
        ..Shared::default()
    }));
    let poller = tokio::spawn({
        let c = Client::new(&target).await?;
        let admin = args.key.clone();
        let path = s.results_path.clone();
        let grace = Duration::from_secs_f64(args.grace.clamp(0.1, 60.0));
        let shared = shared.clone();
        async move { poll(c, &admin, &path, grace, shared).await }
    });
    let sent = send(c, &args, &s.sdk_key, shared.clone()).await;
    if sent.is_err()
        && let Ok(mut sh) = shared.lock()
    {
        sh.sending = false;
    }
    let (mut ack, events) = sent?;
    let mut polls = poller.await??;
    let batches = shared
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .batches
        .clone();
    let mut lat: Vec<u64> = batches
        .iter()
        .filter_map(|b| b.seen.map(|s| (s - b.acked).as_nanos() as u64))
        .collect();
    let missing = batches.len() - lat.len();
    let l = Latency::of(&mut lat);
    let a = Latency::of(&mut ack);
    let p = Latency::of(&mut polls);
    eprintln!(
        "latency: {} batches ({} events), {} missing; acknowledged to shown in results: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        batches.len(),
        events,
        missing,
        l.p50.as_secs_f64() * 1e3,
        l.p90.as_secs_f64() * 1e3,
        l.p99.as_secs_f64() * 1e3,
        l.max.as_secs_f64() * 1e3
    );
    eprintln!(
        "latency: batch acknowledgement p50 {:.1} ms, p99 {:.1} ms; {} result polls, p50 {:.2} ms, p99 {:.2} ms",
        a.p50.as_secs_f64() * 1e3,
        a.p99.as_secs_f64() * 1e3,
        polls.len(),
        p.p50.as_secs_f64() * 1e3,
        p.p99.as_secs_f64() * 1e3
    );
    Ok(json!({
        "mode": "latency",
        "project": s.project,
        "batches": batches.len(),
        "events": events,
        "missing": missing,
        "ack_to_result": l.to_json(),
        "ack": a.to_json(),
        "result_polls": polls.len(),
        "result_poll": p.to_json(),
    }))
}
